"""From a Redis pub/sub message to an event: its name and its payload.

A channel becomes the event's name (less the prefix); the message becomes
the payload by the core's relay payload rule
(:func:`rocketman_core.plugin.relay_payload`): the JSON value when it is
strict JSON, else the text. What cannot become an event is dropped with a
reason the relay counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rocketman_core.plugin import relay_payload

__all__ = [
    "DROP_REASONS",
    "Dropped",
    "Relayed",
    "translate",
]

#: Why a message can be dropped: the keys of the relay's ``dropped_*`` counters.
DROP_REASONS = ("too_large", "not_utf8", "no_prefix", "bad_name", "backlog_full", "emit_failed")


@dataclass(frozen=True, slots=True)
class Relayed:
    """A message that becomes the event ``name`` with ``payload``."""

    name: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message that cannot become an event, and why (one of ``DROP_REASONS``)."""

    reason: str
    detail: str


def translate(channel: bytes | str, data: bytes | str, *, prefix: str, max_bytes: int) -> Relayed | Dropped:
    """Turn one published message into an event, or say why it is dropped.

    The event name is checked by ``emit`` itself (it raises ``ValueError``),
    so the relay and the core never disagree on what a valid name is.
    """
    size = len(data)
    if size > max_bytes:
        return Dropped("too_large", f"{size} bytes, over the limit of {max_bytes}")
    try:
        name = channel.decode("utf-8") if isinstance(channel, bytes) else channel
    except UnicodeDecodeError:
        return Dropped("not_utf8", "the channel name is not UTF-8")
    if prefix:
        if not name.startswith(prefix):
            return Dropped("no_prefix", f"the channel does not start with {prefix!r}")
        name = name[len(prefix):]
    try:
        return Relayed(name, relay_payload(data))
    except UnicodeDecodeError as error:
        return Dropped("not_utf8", f"the message is not UTF-8 ({error.reason} at byte {error.start})")
