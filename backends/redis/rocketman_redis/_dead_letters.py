"""Dead letters in Redis: a sorted set of ids in arrival order, hashes by id, an index per subscription.

Listing, replaying and purging work in pages of a thousand ids, so that no
script unpacks more than Lua allows and none blocks the server for long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from rocketman_core import DeadLetter

from . import _scripts
from ._errors import StorageError
from ._layout import KeyLayout, SubscriptionKeys
from ._routing import Table
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

    def _error(self, doing: str, error: RedisError) -> StorageError:
        raise NotImplementedError  # provided by RedisStorage

    def _settle(self, script: Script, deliveries: Sequence[Any],
                keys: Callable[[SubscriptionKeys], tuple[str, ...]],
                args: Callable[[Any, list[int], bool], tuple[Any, ...]], doing: str) -> int:
        raise NotImplementedError  # provided by RedisStorage

    def _versioned(self, script: Script, build: Callable[[Table], tuple[Sequence[str], Sequence[Any]]],
                   doing: str) -> Any:
        raise NotImplementedError  # provided by RedisStorage

    def dead_letter(self, delivery: Any, message: bytes, reason: str) -> None:
        """Replace ``delivery`` by a dead letter of its subscription, in one step (one round trip)."""
        keys = self.keys
        self._settle(_DEAD_LETTER, [delivery], lambda sub: (
            sub.reserved, sub.leases, sub.dead,
            keys.dead, keys.dead_messages, keys.dead_reasons, keys.dead_times,
            keys.dead_subscriptions, keys.dead_sequence,
        ), lambda lease, indices, whole: (
            lease.token, str(indices[0]), "1" if whole else "0", message, reason, delivery.subscription),
            "keep a dead letter of")
        delivery.acked = True

    def dead_letters(self, limit: int | None = None, subscription: str | None = None) -> list[Any]:
        """The dead letters, oldest first, at most ``limit``, of one subscription or all."""
        if limit is not None and limit <= 0:
            return []
        keys = self.keys
        index = keys.dead if subscription is None else keys.subscription(subscription).dead
        letters: list[Any] = []
        start = 0
        while limit is None or len(letters) < limit:
            page = MAX_BATCH if limit is None else min(MAX_BATCH, limit - len(letters))
            try:
                ids, messages, reasons, times, subscriptions = self._wire.run(
                    _DEAD_LETTERS, (index, *keys.dead_keys()[1:]), (start, start + page - 1))
            except RedisError as error:
                raise self._error("list dead letters", error) from error
            letters += [
                DeadLetter(letter_id.decode(), message, (reason or b"").decode("utf-8", "replace"),
                           float(failed_at) if failed_at else 0.0,
                           name.decode() if name else None)
                for letter_id, message, reason, failed_at, name
                in zip(ids, messages, reasons, times, subscriptions, strict=True)
                if message is not None
            ]
            if len(ids) < page:
                break
            start += page
        return letters

    def replay_dead_letters(self, replacements: Mapping[str, tuple[str, bytes]]) -> int:
        """Queue each replacement for its subscription in place of its dead letter, atomically."""
        keys = self.keys
        items = list(replacements.items())
        replayed = 0
        try:
            for start in range(0, len(items), MAX_BATCH):
                targets: dict[str, int] = {}
                script_keys: list[str] = [keys.subscriptions, *keys.dead_keys()]
                args: list[Any] = []
                for letter_id, (name, message) in items[start:start + MAX_BATCH]:
                    if name not in targets:
                        targets[name] = len(targets) + 1
                        sub = keys.subscription(name)
                        script_keys += (sub.queue, sub.wake, sub.dead)
                    args += (letter_id, targets[name], name, message)
                replayed += int(self._wire.run(_REPLAY, script_keys, args))
        except RedisError as error:
            raise self._error("replay dead letters", error) from error
        return replayed

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters, or all of them; returns how many."""
        keys = self.keys
        if ids is None:
            def build(table: Table) -> tuple[list[str], list[Any]]:
                return ([keys.version, keys.subscriptions, *keys.dead_keys(),
                         *(table.keys[name].dead for name in table.names)], [table.version])

            return int(self._versioned(_PURGE_ALL, build, "purge dead letters"))
        ids = list(ids)
        purged = 0
        try:
            for start in range(0, len(ids), MAX_BATCH):
                chunk = ids[start:start + MAX_BATCH]
                owners = self._wire.call("HMGET", keys.dead_subscriptions, *chunk)
                groups: dict[str | None, list[str]] = {}
                for letter_id, owner in zip(chunk, owners, strict=True):
                    groups.setdefault(owner.decode() if owner else None, []).append(letter_id)
                named = [name for name in groups if name is not None]
                script_keys = [*keys.dead_keys(), *(keys.subscription(n).dead for n in named)]
                counts = [len(groups[n]) for n in named] + [len(groups.get(None, []))]
                flat = [i for n in named for i in groups[n]] + groups.get(None, [])
                purged += int(self._wire.run(_PURGE_IDS, script_keys, (*counts, *flat)))
        except RedisError as error:
            raise self._error("purge dead letters", error) from error
        return purged
