"""From a NATS message to a rocketman event: subjects, names and payloads.

Pure functions, without NATS: what the relay subscribes to, what it calls an
event, what payload it passes, and why it drops a message.
"""

from __future__ import annotations

import re
from typing import Any

from rocketman_core.plugin import relay_payload, validate_event_name

__all__ = [
    "Dropped",
    "event_name",
    "parse_subjects",
    "payload_of",
]

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
    # The core's own rule, checked here so that a bad subject is a counted
    # drop, not an error raised by emit.
    try:
        return validate_event_name(name)
    except ValueError as error:
        raise Dropped(
            "invalid_name",
            f"subject {subject!r} gives an event name that is not a valid rocketman event "
            f"name: {error}",
        ) from None


def payload_of(data: bytes, max_bytes: int) -> Any:
    """The event payload for a message body.

    The core's relay payload rule (:func:`rocketman_core.plugin.relay_payload`):
    JSON when the body is a strict JSON document (an object, a list, a
    string, a number, ``true``/``false``/``null``), otherwise the body as text.
    Raises :class:`Dropped` when the body is longer than ``max_bytes`` or is
    not UTF-8: rocketman payloads are JSON, which cannot carry arbitrary bytes.
    """
    if len(data) > max_bytes:
        raise Dropped("oversize", f"{len(data)} bytes, more than max_bytes={max_bytes}")
    try:
        return relay_payload(data)
    except UnicodeDecodeError as error:
        raise Dropped("invalid_utf8", f"the body is not UTF-8 ({error.reason})") from None

