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

import itertools
import json
import os
import re
import time
from collections.abc import Sequence
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, NamedTuple

__all__ = [
    "Event",
    "MalformedMessage",
    "decode",
    "encode",
    "encode_event",
    "new_id",
    "new_message",
    "new_messages",
    "payload_error",
    "payload_from_text",
    "payload_text",
    "validate_name",
]

_NAME = r"[^\s*]{1,255}\Z"  # compiled by re at the first new name, not at import
# Valid names seen so far, each with its JSON form: checking and quoting a
# name is one dict lookup on the emit path.
_valid_names: dict[str, str] = {}


def _fail_default(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder and scanner of the json module, called directly. json.dumps
# builds a JSONEncoder and json.loads detects the bytes' encoding on every
# call: together three times the cost of the encoding and parsing themselves.
if c_make_encoder is not None:
    _c_encoder = c_make_encoder(
        None, _fail_default, encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def _encode_json(value: Any) -> str:
        return "".join(_c_encoder(value, 0))
else:  # pragma: no cover - Pythons without the _json accelerator
    _encode_json = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode  # type: ignore[assignment]

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity)")


# Decode refuses what encode refuses: emit rejects NaN and Infinity, so a
# message holding them (a producer in another language) is malformed here,
# not accepted and then impossible to write back for a retry. (A number
# that overflows to infinity, 1e400, costs a check on every float to catch
# here; the retry path catches it instead, see Dispatch._failed.)
_scan = json.JSONDecoder(parse_constant=_no_constant).scan_once  # type: ignore[attr-defined]


def _decode_json_stdlib(message: bytes | str) -> Any:
    """Parse JSON from UTF-8 bytes (or text); raise ValueError when it is not JSON."""
    text = message.decode() if isinstance(message, bytes) else message
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        # Leading or trailing whitespace, or not JSON: the full parser
        # accepts the first and explains the second.
        return json.loads(text, parse_constant=_no_constant)
    return value


def _speedups_wanted() -> bool:
    return os.environ.get("ROCKETMAN_SPEEDUPS", "1").strip().lower() not in ("0", "false", "no", "off")


def use_speedups(enabled: bool = True) -> bool:
    """Decode with msgspec when it is installed (``rocketman-core[speedups]``) and ``enabled``.

    Returns whether it is in use now. msgspec parses the envelope about
    twice as fast as the standard library; whatever it refuses (a number
    that overflows to infinity, an escaped lone surrogate, NaN...) goes to
    the standard parser, so the same bytes are accepted and refused, with the
    same values and the same error messages, with or without it. (orjson is
    not used: it turns integers past 64 bits into floats.) Encoding stays
    with the standard library, whose errors emit reports. ``ROCKETMAN_SPEEDUPS=0``
    turns it off (read at the first decode).
    """
    global _decode_json
    decoder: Any = None
    if enabled:
        try:
            import msgspec
        except ImportError:
            pass
        else:
            decoder, refused = msgspec.json.Decoder(), (msgspec.DecodeError, RecursionError)
    if decoder is None:
        _decode_json = _decode_json_stdlib
        return False
    fast, slow = decoder.decode, _decode_json_stdlib

    def decode_json(message: bytes | str) -> Any:
        try:
            return fast(message)
        except refused:  # the standard parser decides, and explains
            return slow(message)

    _decode_json = decode_json
    return True


def _decode_json_first(message: bytes | str) -> Any:
    """The first decode chooses the decoder: importing msgspec is not part of ``import rocketman_core``."""
    use_speedups(_speedups_wanted())
    return _decode_json(message)


_decode_json = _decode_json_first


class Event(NamedTuple):
    """An event as a consumer sees it (read-only).

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

#: The clock as an envelope writes it (seconds, to the millisecond): (milliseconds, text).
_clock_text: tuple[int, str] = (0, "0.000")


def emitted_now() -> str:
    """``time.time()`` as ``emitted_at`` is written, ``"1796291831.757"``: formatted once per millisecond.

    Formatting a float was a fifth of ``new_message``; events emitted in the
    same millisecond share the text. One tuple, replaced whole, so that a
    thread never reads one millisecond's number beside another's text.
    """
    global _clock_text
    milliseconds = time.time_ns() // 1_000_000
    last, text = _clock_text
    if milliseconds != last:
        text = seconds_text(milliseconds)
        _clock_text = (milliseconds, text)
    return text


def seconds_text(milliseconds: int) -> str:
    """A time in milliseconds as JSON seconds with three decimals: ``5`` -> ``"0.005"``."""
    return f"{milliseconds // 1000}.{milliseconds % 1000:03d}"


def validate_name(name: Any) -> str:
    """Return ``name`` if it is a valid event name, else raise ``ValueError``.

    A name is 1 to 255 characters, without whitespace or ``*`` (which is for
    patterns).
    """
    if not isinstance(name, str):
        raise ValueError(f"an event name must be a string, not {type(name).__name__}")
    if name in _valid_names:
        return name
    if not re.match(_NAME, name):
        raise ValueError(
            f"invalid event name {name!r}: it must be 1 to 255 characters, "
            "without whitespace or '*'"
        )
    if len(_valid_names) < 10_000:
        _valid_names[name] = encode_basestring_ascii(name)
    return name


def new_message(name: Any, payload: Any) -> tuple[str, bytes]:
    """A new event's id and envelope, from a name to check and a payload to encode: emit's path.

    Raises ``ValueError`` for an invalid name and ``TypeError`` (from
    :func:`payload_error`) for a payload JSON cannot carry. The same bytes as
    :func:`encode`, written out: this runs once per emitted event.
    """
    quoted = _valid_names.get(name) if type(name) is str else None
    if quoted is None:
        validate_name(name)
        quoted = _valid_names.get(name) or encode_basestring_ascii(name)
    try:
        body = _encode_json(payload)
    except (TypeError, ValueError, RecursionError) as error:
        raise payload_error(name, error) from None
    event_id = new_id()
    return event_id, (f'{{"id":"{event_id}","name":{quoted},"emitted_at":{emitted_now()},'
                      f'"attempt":0,"payload":{body}}}').encode()


def new_messages(events: Sequence[tuple[str, Any]]) -> tuple[list[str], list[tuple[str, bytes]]]:
    """Ids and ``(name, envelope)`` pairs of new events with valid names, one clock reading for all.

    Raises ``TypeError`` for the first payload JSON cannot carry, before
    returning anything: one bad payload makes none.
    """
    emitted_at = emitted_now()
    ids: list[str] = []
    messages: list[tuple[str, bytes]] = []
    for name, payload in events:
        try:
            body = _encode_json(payload)
        except (TypeError, ValueError, RecursionError) as error:
            raise payload_error(name, error) from None
        event_id = new_id()
        quoted = _valid_names.get(name) or encode_basestring_ascii(name)
        ids.append(event_id)
        messages.append((name, f'{{"id":"{event_id}","name":{quoted},"emitted_at":{emitted_at},'
                               f'"attempt":0,"payload":{body}}}'.encode()))
    return ids, messages


def payload_text(name: str, payload: Any) -> str:
    """``payload`` as JSON text; raise ``TypeError`` (:func:`payload_error`) when JSON cannot carry it."""
    try:
        return _encode_json(payload)
    except (TypeError, ValueError, RecursionError) as error:
        raise payload_error(name, error) from None


def payload_from_text(text: str) -> Any:
    """A fresh payload parsed from :func:`payload_text`'s output (each call its own objects)."""
    return _decode_json(text)


def encode(
    name: str,
    payload: Any,
    *,
    id: str | None = None,
    emitted_at: float | None = None,
    attempt: int = 0,
    consumer: str | None = None,
) -> bytes:
    """Encode an envelope; raise ``TypeError`` when JSON cannot carry the payload.

    ``name`` must be valid (see :func:`validate_name`).
    """
    try:
        body = _encode_json(payload)
    except (TypeError, ValueError, RecursionError) as error:
        raise payload_error(name, error) from None
    quoted = _valid_names.get(name) or encode_basestring_ascii(name)
    # Written out rather than encoded from a dict: the fields are known
    # strings and numbers, and only the payload needs the encoder. The time
    # is kept to the millisecond: repr() of a float, and parsing its 17
    # digits back, were a fifth of an event's cost.
    quoted_id = encode_basestring_ascii(id) if id else '"' + new_id() + '"'
    head = (
        f'{{"id":{quoted_id},'
        f'"name":{quoted},'
        f'"emitted_at":{time.time() if emitted_at is None else emitted_at:.3f},'
        f'"attempt":{int(attempt)}'
    )
    if consumer is not None:
        head += f',"consumer":{encode_basestring_ascii(consumer)}'
    return f'{head},"payload":{body}}}'.encode()


def payload_error(name: str, error: Exception) -> TypeError:
    """The error for a payload of event ``name`` that JSON cannot carry."""
    reason = str(error)
    if isinstance(error, ValueError) and "Out of range float" in reason:
        reason = "a float nan, inf or -inf is not JSON"
    elif isinstance(error, RecursionError):
        reason = "it refers to itself, or is nested too deeply"
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


_new_event = tuple.__new__  # Event(...) through NamedTuple's __new__ costs three times more


def emitted_event(event_id: str, name: str, payload: Any, emitted_at: float) -> Event:
    """``Event(event_id, name, payload, emitted_at)`` as the emitted hook gets it, without NamedTuple's slow ``__new__``."""
    return _new_event(Event, (event_id, name, payload, emitted_at, 0, None))


def decode(message: bytes) -> Event:
    """Decode an envelope; raise :class:`MalformedMessage` saying what is wrong."""
    try:
        data = _decode_json(message)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if type(data) is not dict:
        raise MalformedMessage(f"not a JSON object but {type(data).__name__}")
    get = data.get
    event_id, name, attempt = get("id"), get("name"), get("attempt", 0)
    emitted_at, consumer = get("emitted_at"), get("consumer")
    if (
        type(event_id) is not str
        or type(name) is not str
        or name not in _valid_names
        or type(attempt) is not int
        or type(emitted_at) is not float
        or (consumer is not None and type(consumer) is not str)
    ):
        # The fast test above failed: find out what is wrong, or accept what
        # a foreign producer may leave out (emitted_at, attempt).
        emitted_at = _check(data, event_id, name, attempt, emitted_at, consumer)
    return _new_event(Event, (event_id, name, get("payload"), emitted_at, attempt, consumer))


def _check(data: dict[str, Any], event_id: Any, name: Any, attempt: Any,
           emitted_at: Any, consumer: Any) -> float:
    for field in ("id", "name"):
        if field not in data:
            raise MalformedMessage(f"the field {field!r} is missing")
    if type(event_id) is not str or not event_id:
        raise MalformedMessage("the field 'id' must be a non-empty string")
    try:
        validate_name(name)
    except ValueError as error:
        raise MalformedMessage(str(error)) from None
    if type(attempt) is not int or attempt < 0:
        raise MalformedMessage("the field 'attempt' must be a non-negative integer")
    if consumer is not None and type(consumer) is not str:
        raise MalformedMessage("the field 'consumer' must be a string")
    if emitted_at is None:
        return time.time()
    if type(emitted_at) not in (int, float):
        raise MalformedMessage("the field 'emitted_at' must be a number")
    return float(emitted_at)
