"""Dead letters as the API shows them: decoded, filtered by event and consumer."""

import logging
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from ._contracts import Storage
from ._envelope import Event, MalformedMessage, decode, encode_event
from ._text import plural

__all__ = ["DeadLetterBook", "DeadLetterRecord", "matches", "to_record"]

logger = logging.getLogger("rocketman")


class DeadLetterRecord(NamedTuple):
    """A dead letter as the API shows it.

    :param id: the storage's id of the dead letter (for replay and purge).
    :param event: the event, or None when the message was not a valid envelope.
    :param consumer: the name of the consumer (its subscription) the letter is
        for; None only for a letter an older version kept without one.
    :param error: why, in full: for a consumer's failure, the one-line reason
        then its traceback (see :attr:`reason`).
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

    @property
    def reason(self) -> str:
        """Why, in one line: ``ValueError: no ledger for invoice 7``, ``malformed message: ...``."""
        return next((line.strip() for line in self.error.splitlines() if line.strip()), "")


def to_record(letter: Any) -> DeadLetterRecord:
    try:
        event: Event | None = decode(letter.message)
    except MalformedMessage:
        event = None
    # A 0.1 dead letter has no subscription; its envelope names its consumer.
    consumer = getattr(letter, "subscription", None) or (event.consumer if event else None)
    return DeadLetterRecord(
        id=letter.id,
        event=event,
        consumer=consumer,
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


class DeadLetterBook:
    """Listing, replaying and purging the dead letters of a storage, as the runtime's API shows them.

    ``storage()`` returns the storage to work on (the runtime builds it on
    first use). The runtime's methods of the same names document the
    arguments.
    """

    def __init__(self, storage: Callable[[], Storage]) -> None:
        self._storage = storage

    def records(
        self, *, event: str | None = None, consumer: str | None = None, limit: int | None = None
    ) -> list[DeadLetterRecord]:
        """Dead letters, oldest first, filtered by event name and consumer (``*`` patterns)."""
        storage = self._storage()
        exact = consumer if consumer is not None and "*" not in consumer else None
        if event is None and (consumer is None or exact is not None):
            # Nothing to filter here: the storage applies the limit itself.
            return [to_record(letter) for letter in storage.dead_letters(limit, subscription=exact)]
        records = [to_record(letter) for letter in storage.dead_letters(subscription=exact)]
        records = [r for r in records if matches(r, event, consumer)]
        return records[:limit] if limit is not None else records

    def replay(
        self,
        *,
        event: str | None = None,
        consumer: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> int:
        """Queue chosen dead letters again, attempts reset; a letter that cannot be stays, with a WARNING."""
        storage = self._storage()
        wanted = set(ids) if ids is not None else None
        replacements: dict[str, tuple[str, bytes]] = {}
        for record in self.records(event=event, consumer=consumer):
            if record.event is None or record.consumer is None:
                continue
            if wanted is not None and record.id not in wanted:
                continue
            try:
                message = encode_event(record.event, attempt=0, consumer=None)
            except (TypeError, ValueError) as error:
                logger.warning("dead letter %s cannot be replayed, and stays: %s", record.id, error)
                continue
            replacements[record.id] = (record.consumer, message)
        replayed = storage.replay_dead_letters(replacements) if replacements else 0
        if replayed < len(replacements):
            logger.warning(
                "%d of %s not replayed: their subscription no longer exists, or another "
                "process replayed or purged them meanwhile",
                len(replacements) - replayed, plural(len(replacements), "dead letter"))
        return replayed

    def purge(
        self,
        *,
        event: str | None = None,
        consumer: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> int:
        """Delete chosen dead letters; without arguments, all of them. Returns how many."""
        storage = self._storage()
        if event is None and consumer is None and ids is None:
            return storage.purge_dead_letters(None)
        wanted = set(ids) if ids is not None else None
        chosen = [
            r.id for r in self.records(event=event, consumer=consumer)
            if wanted is None or r.id in wanted
        ]
        return storage.purge_dead_letters(chosen) if chosen else 0
