"""From a NATS message to a rocketman event: subjects, names and payloads.

Pure functions, without NATS: what the relay subscribes to, what it calls an
event, what payload it passes, and why it drops a message.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "Dropped",
    "event_name",
    "parse_subjects",
    "payload_of",
]

# rocketman's rule for event names (see rocketman_core.emit): 1 to 255
# characters, no whitespace, no "*" (kept for consumer patterns). Checked here
# so that a bad subject is a counted drop, not an error raised by emit.
_EVENT_NAME = re.compile(r"[^\s*]{1,255}\Z")
_WHITESPACE = re.compile(r"\s")
_SEPARATORS = re.compile(r"[,\s]+")


class Dropped(Exception):
    """A NATS message the relay does not emit, with the reason (a counter key).

    :param reason: ``invalid_utf8``, ``invalid_name`` or ``oversize``.
    :param detail: what to log about it.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_subjects(subjects: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The subjects to subscribe to, from ``"a.>,b.*"`` or a sequence.

    In a string, commas or whitespace separate subjects: whitespace (``+`` in
    a URL) because ``ROCKETMAN_RELAYS`` already uses commas between relays.
    Raises ``ValueError`` naming the option when a subject is not a valid
    NATS subscription subject: no empty token, no whitespace, ``*`` and ``>``
    only as whole tokens, ``>`` only last. Duplicates are removed, order kept.
    """
    if isinstance(subjects, str):
        parts = [part for part in _SEPARATORS.split(subjects) if part]
    else:
        parts = list(subjects)
    found: list[str] = []
    for part in parts:
        subject = part.strip()
        problem = _subject_problem(subject)
        if problem:
            raise ValueError(f"invalid NATS subject {subject!r} in option 'subjects': {problem}")
        if subject not in found:
            found.append(subject)
    if not found:
        raise ValueError("option 'subjects' names no subject (use '>' for every subject)")
    return tuple(found)


def _subject_problem(subject: str) -> str | None:
    if not subject:
        return "it is empty"
    if _WHITESPACE.search(subject):
        return "it contains whitespace"
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if not token:
            return "it has an empty token (a leading, trailing or double '.')"
        if ">" in token and (token != ">" or index != len(tokens) - 1):
            return "'>' must be a whole token, and the last one"
        if "*" in token and token != "*":
            return "'*' must be a whole token"
    return None


def event_name(subject: str, prefix: str) -> str:
    """The event name for a message on ``subject``: the subject less ``prefix``.

    A subject that does not start with ``prefix`` keeps its whole name.
    Raises :class:`Dropped` when the result is not a valid rocketman event
    name (empty once the prefix is stripped, longer than 255 characters, or
    with ``*``).
    """
    name = subject[len(prefix):] if prefix and subject.startswith(prefix) else subject
    if not _EVENT_NAME.match(name):
        raise Dropped(
            "invalid_name",
            f"subject {subject!r} gives the event name {name!r}, which is not a valid "
            "rocketman event name (1 to 255 characters, no whitespace or '*')",
        )
    return name


def payload_of(data: bytes, max_bytes: int) -> Any:
    """The event payload for a message body.

    JSON when the body is a valid JSON document (an object, a list, a
    string, a number, ``true``/``false``/``null``), otherwise the body as text.
    Raises :class:`Dropped` when the body is longer than ``max_bytes`` or is
    not UTF-8: rocketman payloads are JSON, which cannot carry arbitrary bytes.
    """
    if len(data) > max_bytes:
        raise Dropped("oversize", f"{len(data)} bytes, more than max_bytes={max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Dropped("invalid_utf8", f"the body is not UTF-8 ({error.reason})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        # Not strict JSON (NaN, Infinity or a number beyond a double, which
        # rocketman's JSON refuses, or nested too deep to decode): the text
        # itself is the payload.
        return text


def _reject_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is beyond the range of a JSON number")
    return value
