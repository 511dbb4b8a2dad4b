"""Events and their envelope: the JSON every storage carries.

An envelope is a JSON object, UTF-8 encoded::

    {"id": "5f0c...-1a", "name": "user.signed_up", "payload": {...},
     "emitted_at": 1764384000.25, "attempt": 0}

``id`` and ``name`` are required strings; ``payload`` is any JSON value
(default null); ``emitted_at`` is seconds since the epoch (default: when it was
read); ``attempt`` counts the failed deliveries so far (default 0). A retry or
a replayed dead letter also has ``"consumer": "module:qualname"``, the one
consumer it is for. A service in another language emits by pushing such an
object into the storage.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "MalformedMessage", "decode", "encode", "new_id", "validate_name"]

_NAME = re.compile(r"[^\s*]{1,255}\Z")
_valid_names: set[str] = set()

# One C encoder for every emit: json.dumps(..., allow_nan=False) would build
# a new JSONEncoder on each call.
_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_encode_json = _encoder.encode
_decode_json = json.loads


@dataclass(frozen=True, slots=True)
class Event:
    """An event as a consumer sees it.

    :param id: unique per event; the same on every delivery of it, so a
        consumer can de-duplicate (delivery is at least once).
    :param name: the event's name.
    :param payload: the payload, as JSON gave it back (tuples are lists,
        dictionary keys are strings).
    :param emitted_at: when it was emitted, seconds since the epoch.
    :param attempt: how many times this delivery failed before (0 at first).
    :param consumer: for a retry, the identity of the one consumer it is for.
    """

    id: str
    name: str
    payload: Any
    emitted_at: float
    attempt: int = 0
    consumer: str | None = None


class MalformedMessage(ValueError):
    """Bytes read from a storage that are not a valid envelope."""


class _Ids:
    """Event ids: a random per-process prefix and a counter.

    Four times cheaper than uuid4 on the emit path, and as unique: the prefix
    is 64 random bits, drawn again in a forked child.
    """

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex() + "-"
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):x}"


new_id = _Ids()


def validate_name(name: Any) -> str:
    """Return ``name`` if it is a valid event name, else raise ``ValueError``.

    A name is 1 to 255 characters, without whitespace or ``*`` (which is for
    patterns).
    """
    if not isinstance(name, str):
        raise ValueError(f"an event name must be a string, not {type(name).__name__}")
    if name in _valid_names:
        return name
    if not _NAME.match(name):
        raise ValueError(
            f"invalid event name {name!r}: it must be 1 to 255 characters, "
            "without whitespace or '*'"
        )
    if len(_valid_names) < 10_000:
        _valid_names.add(name)
    return name


def encode(
    name: str,
    payload: Any,
    *,
    id: str | None = None,
    emitted_at: float | None = None,
    attempt: int = 0,
    consumer: str | None = None,
) -> bytes:
    """Encode an envelope; raise ``TypeError`` when JSON cannot carry the payload."""
    envelope: dict[str, Any] = {
        "id": id or new_id(),
        "name": name,
        "payload": payload,
        "emitted_at": time.time() if emitted_at is None else emitted_at,
        "attempt": attempt,
    }
    if consumer is not None:
        envelope["consumer"] = consumer
    try:
        return _encode_json(envelope).encode()
    except (TypeError, ValueError) as error:
        raise payload_error(name, error) from None


def payload_error(name: str, error: Exception) -> TypeError:
    """The error for a payload of event ``name`` that JSON cannot carry."""
    reason = str(error)
    if isinstance(error, ValueError) and "Out of range float" in reason:
        reason = "a float nan, inf or -inf is not JSON"
    return TypeError(
        f"the payload of event {name!r} cannot be carried as JSON: {reason}. "
        "Pass dicts, lists, strings, numbers, booleans and None only."
    )


def encode_event(event: Event, *, attempt: int, consumer: str | None) -> bytes:
    """Encode ``event`` again, for a retry or a replay of one consumer."""
    return encode(
        event.name,
        event.payload,
        id=event.id,
        emitted_at=event.emitted_at,
        attempt=attempt,
        consumer=consumer,
    )


def decode(message: bytes) -> Event:
    """Decode an envelope; raise :class:`MalformedMessage` saying what is wrong."""
    try:
        data = _decode_json(message)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if type(data) is not dict:
        raise MalformedMessage(f"not a JSON object but {type(data).__name__}")
    try:
        event = Event(
            data["id"],
            data["name"],
            data.get("payload"),
            data.get("emitted_at") or time.time(),
            data.get("attempt", 0),
            data.get("consumer"),
        )
    except KeyError as missing:
        raise MalformedMessage(f"the field {missing} is missing") from None
    if type(event.id) is not str or not event.id:
        raise MalformedMessage("the field 'id' must be a non-empty string")
    if type(event.name) is not str or event.name not in _valid_names:
        try:
            validate_name(event.name)
        except ValueError as error:
            raise MalformedMessage(str(error)) from None
    if type(event.attempt) is not int or event.attempt < 0:
        raise MalformedMessage("the field 'attempt' must be a non-negative integer")
    if type(event.emitted_at) not in (int, float):
        raise MalformedMessage("the field 'emitted_at' must be a number")
    if event.consumer is not None and type(event.consumer) is not str:
        raise MalformedMessage("the field 'consumer' must be a string")
    return event
