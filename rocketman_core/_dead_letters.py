"""Dead letters as the API shows them: decoded, filtered by event and consumer."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._envelope import Event, MalformedMessage, decode

__all__ = ["DeadLetterRecord", "matches", "to_record"]


class DeadLetterRecord(NamedTuple):
    """A dead letter as the API shows it.

    :param id: the storage's id of the dead letter (for replay and purge).
    :param event: the event, or None when the message was not a valid envelope.
    :param consumer: the consumer that failed, or None for a malformed message.
    :param error: the reason: the error with its traceback.
    :param attempts: how many times the consumer was called.
    :param failed_at: when it was dead-lettered, seconds since the epoch.
    :param message: the stored bytes, exactly.
    """

    id: str
    event: Event | None
    consumer: str | None
    error: str
    attempts: int
    failed_at: float
    message: bytes


def to_record(letter: Any) -> DeadLetterRecord:
    try:
        event: Event | None = decode(letter.message)
    except MalformedMessage:
        event = None
    return DeadLetterRecord(
        id=letter.id,
        event=event,
        consumer=event.consumer if event else None,
        error=letter.reason,
        attempts=event.attempt if event else 0,
        failed_at=letter.failed_at,
        message=letter.message,
    )


def matches(record: DeadLetterRecord, event: str | None, consumer: str | None) -> bool:
    """Whether ``record`` is for an event named ``event`` and for ``consumer`` (``*`` patterns)."""
    import fnmatch

    if event is not None and (record.event is None or not fnmatch.fnmatchcase(record.event.name, event)):
        return False
    return consumer is None or (
        record.consumer is not None and fnmatch.fnmatchcase(record.consumer, consumer)
    )
