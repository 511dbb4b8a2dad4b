"""Dead letters in Redis: a sorted set of ids in arrival order, and three hashes by id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from rocketman_core import DeadLetter

from . import _scripts
from ._errors import StorageError
from ._layout import KeyLayout
from ._wire import MAX_BATCH, Script, Wire

__all__ = ["DeadLetters"]


_DEAD_LETTER = Script(_scripts.DEAD_LETTER)
_DEAD_LETTERS = Script(_scripts.DEAD_LETTERS)
_REPLAY = Script(_scripts.REPLAY)
_PURGE_IDS = Script(_scripts.PURGE_IDS)
_PURGE_ALL = Script(_scripts.PURGE_ALL)


class DeadLetters:
    """The dead-letter half of :class:`~rocketman_redis.RedisStorage` (a mixin)."""

    keys: KeyLayout
    _wire: Wire
    _queue: str
    _dead_keys: tuple[str, ...]

    def _error(self, doing: str, error: RedisError) -> StorageError:
        raise NotImplementedError  # provided by RedisStorage

    def dead_letter(self, message: bytes, reason: str) -> None:
        """Keep ``message`` aside with ``reason`` (one round trip)."""
        try:
            self._wire.run(_DEAD_LETTER, (*self._dead_keys, self.keys.dead_sequence), (message, reason))
        except RedisError as error:
            raise self._error("keep a dead letter", error) from error

    def dead_letters(self, limit: int | None = None) -> list[Any]:
        """The dead letters, oldest first, at most ``limit``."""
        if limit is not None and limit <= 0:
            return []
        try:
            ids, messages, reasons, times = self._wire.run(
                _DEAD_LETTERS, self._dead_keys, (-1 if limit is None else limit - 1,))
        except RedisError as error:
            raise self._error("list dead letters", error) from error
        return [
            DeadLetter(letter_id.decode(), message, (reason or b"").decode("utf-8", "replace"),
                        float(failed_at) if failed_at else 0.0)
            for letter_id, message, reason, failed_at in zip(ids, messages, reasons, times, strict=True)
            if message is not None
        ]

    def replay_dead_letters(self, replacements: Mapping[str, bytes]) -> int:
        """Queue each replacement in place of its dead letter, atomically; returns how many."""
        if not replacements:
            return 0
        flat: list[str | bytes] = []
        for letter_id, message in replacements.items():
            flat += (letter_id, message)
        try:
            return int(self._wire.run(_REPLAY, (*self._dead_keys, self._queue), flat))
        except RedisError as error:
            raise self._error("replay dead letters", error) from error

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters, or all of them; returns how many."""
        try:
            if ids is None:
                return int(self._wire.run(_PURGE_ALL, self._dead_keys))
            ids = list(ids)
            purged = 0
            for start in range(0, len(ids), MAX_BATCH):
                purged += int(self._wire.run(_PURGE_IDS, self._dead_keys, ids[start:start + MAX_BATCH]))
            return purged
        except RedisError as error:
            raise self._error("purge dead letters", error) from error
