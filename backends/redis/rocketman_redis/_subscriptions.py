"""Subscriptions in Redis: registering, keeping alive, listing and removing them; routing 0.1 data.

A mixin of :class:`~rocketman_redis.RedisStorage`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from rocketman_core import Registration, SubscriptionInfo

from . import _scripts
from ._errors import StorageError
from ._layout import KeyLayout
from ._routing import Table
from ._wire import Script, Wire

__all__ = ["Subscriptions"]

logger = logging.getLogger("rocketman.redis")

_SUBSCRIBE = Script(_scripts.SUBSCRIBE)
_KEEP_ALIVE = Script(_scripts.KEEP_ALIVE)
_UNSUBSCRIBE = Script(_scripts.UNSUBSCRIBE)
_LEAVE = Script(_scripts.LEAVE)
_MIGRATE = Script(_scripts.MIGRATE)

#: Messages of the 0.1 layout routed per MIGRATE call.
_MIGRATE_BATCH = 500
#: MIGRATE calls per keep-alive at most: the rest waits for the next one.
_MIGRATE_CALLS = 20


#: Seconds the inbox router blocks before it looks whether the storage closed.
_ROUTER_BLOCK = 5.0


class Subscriptions:
    """The subscription half of :class:`~rocketman_redis.RedisStorage`."""

    keys: KeyLayout
    url: str
    socket_timeout: float
    _wire: Wire
    _table: Table
    _park_args: tuple[str, str]
    _closed: bool
    _lock: threading.Lock
    _interrupted: threading.Condition
    _router: threading.Thread | None
    _router_client: int | None

    def _unblock(self, client_ids: Sequence[int]) -> None:
        raise NotImplementedError  # provided by RedisStorage

    def _error(self, doing: str, error: RedisError) -> StorageError:
        raise NotImplementedError  # provided by RedisStorage

    def _versioned(self, script: Script, build: Callable[[Table], tuple[Sequence[str], Sequence[Any]]],
                   doing: str) -> Any:
        raise NotImplementedError  # provided by RedisStorage

    def _counts(self, with_hosts: bool) -> tuple[Table, list[Any], list[Any]]:
        raise NotImplementedError  # provided by RedisStorage

    def _count_evictions(self, evicted: int) -> None:
        raise NotImplementedError  # provided by RedisStorage

    def subscribe(self, subscriptions: Sequence[Any], host: str) -> list[Registration]:
        """Create or update each subscription in one script call; a new one copies the matching parked events."""
        keys = self.keys
        done: list[Registration] = []
        for subscription in subscriptions:
            patterns = " ".join(subscription.patterns)
            sub = keys.subscription(subscription.name)
            try:
                created, previous, copied = self._wire.run(_SUBSCRIBE, (
                    keys.version, keys.subscriptions, keys.created, keys.parked,
                    sub.queue, sub.wake, sub.hosts, keys.seen,
                ), (subscription.name, patterns, subscription.start, host))
            except RedisError as error:
                raise self._error(f"register the subscription {subscription.name}", error) from error
            done.append(Registration(
                subscription.name, bool(created),
                tuple(previous.decode().split()) if previous else None, int(copied)))
        self._migrate()
        self._start_router()
        return done

    # -- the inbox: {ns}:queue -------------------------------------------------

    def _start_router(self) -> None:
        """Route what is pushed to the inbox as it comes, on a thread of a process that hosts."""
        with self._lock:
            # A thread of the parent is not alive in a forked child: start one there.
            if (self._router is not None and self._router.is_alive()) or self._closed:
                return
            self._router = threading.Thread(target=self._route_inbox, daemon=True,
                                            name="rocketman-redis-inbox")
        self._router.start()

    def _route_inbox(self) -> None:
        """Block until the inbox has a message, move it to ``{ns}:taking``, route it (MIGRATE).

        BLMOVE *moves* the message, so a process killed before it routed it
        loses nothing: MIGRATE takes ``{ns}:taking`` first, in any process.
        Producers in other languages (and 0.1 producers during a rolling
        deploy) push to the inbox; this is why their events arrive at once.
        """
        keys = self.keys
        failures = 0

        def on_blocked(client_id: int | None) -> None:
            with self._lock:
                self._router_client = client_id
            if self._closed and client_id is not None:
                self._unblock([client_id])

        while not self._closed:
            try:
                moved = self._wire.block_move(keys.queue, keys.taking, _ROUTER_BLOCK,
                                              self.socket_timeout, on_blocked)
                if moved is not None:
                    self._migrate()
                failures = 0
            except Exception as error:  # the workers log outages; this thread retries quietly
                failures += 1
                logger.debug("the inbox router failed (%s); trying again", error)
                with self._interrupted:
                    if not self._closed:
                        self._interrupted.wait(min(5.0, 0.1 * 2 ** min(failures, 6)))
            finally:
                with self._lock:
                    self._router_client = None

    def _stop_router(self) -> None:
        with self._lock:
            client_id, router = self._router_client, self._router
        if client_id is not None:
            self._unblock([client_id])
        if router is not None and router is not threading.current_thread():
            router.join(1.0)

    def keep_alive(self, host: str, names: Sequence[str]) -> list[str]:
        """Record that ``host`` hosts ``names`` now, evict aged parked events, route 0.1 leftovers."""
        keys = self.keys
        try:
            evicted, legacy, *missing = self._wire.run(_KEEP_ALIVE, (
                keys.subscriptions, keys.parked, keys.dropped,
                keys.queue, keys.taking, keys.leases, keys.delayed, keys.seen,
                *(keys.subscription(name).hosts for name in names),
            ), (host, self._park_args[1], self._park_args[0], *names))
        except RedisError as error:
            raise self._error("keep the subscriptions alive", error) from error
        if evicted:
            self._count_evictions(int(evicted))
        if legacy:
            self._migrate()
        return [name.decode() for name in missing]

    _inbox_logged_at = float("-inf")

    def _migrate(self) -> None:
        """Route what the inbox holds (foreign or 0.1 producers' pushes, 0.1 retries and leases)."""
        keys = self.keys

        def build(table: Table) -> tuple[list[str], list[Any]]:
            script_keys = [keys.version, keys.subscriptions, keys.parked, keys.dropped,
                           *keys.legacy(), keys.dead, keys.dead_messages, keys.dead_reasons,
                           keys.dead_times, keys.dead_sequence]
            for name in table.names:
                script_keys += (table.keys[name].queue, table.keys[name].wake)
            return script_keys, [table.version, _MIGRATE_BATCH, *self._park_args, *table.names]

        moved_total = 0
        for _ in range(_MIGRATE_CALLS):
            moved, left = self._versioned(_MIGRATE, build, "route the inbox")
            moved_total += int(moved)
            if not left or not moved:
                break
        if moved_total and (time.monotonic() - self._inbox_logged_at > 60):
            self._inbox_logged_at = time.monotonic()
            logger.info(
                "routed %d events from the inbox %s (pushed there by producers in other "
                "languages or by rocketman 0.1, with 0.1's retries and leases) into the "
                "subscriptions", moved_total, keys.queue)

    def leave(self, host: str, names: Sequence[str]) -> None:
        """``host`` stops hosting ``names``: it is no longer listed as their host."""
        keys = self.keys
        if not names:
            return
        try:
            self._wire.run(_LEAVE, (keys.subscriptions, keys.seen,
                                    *(keys.subscription(name).hosts for name in names)),
                           (host, *names))
        except RedisError as error:
            raise self._error("say this process stops hosting its subscriptions", error) from error

    def unsubscribe(self, name: str) -> bool:
        """Remove a subscription with its backlog and dead letters, in one script call."""
        keys = self.keys
        sub = keys.subscription(name)
        try:
            removed = self._wire.run(_UNSUBSCRIBE, (
                keys.version, keys.subscriptions, keys.created,
                sub.queue, sub.wake, sub.reserved, sub.leases, sub.delayed, sub.dead, sub.hosts,
                *keys.dead_keys(), keys.seen,
            ), (name,))
        except RedisError as error:
            raise self._error(f"remove the subscription {name}", error) from error
        return bool(removed)

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subscription with its patterns, backlog and hosts, in one consistent snapshot."""
        table, _, rows = self._counts(with_hosts=True)
        infos = []
        for name, row in zip(table.names, rows, strict=True):
            queued, reserved, delayed, dead, created, seen, *hosts = row
            infos.append(SubscriptionInfo(
                name, table.patterns[name],
                {"queued": int(queued), "reserved": int(reserved), "delayed": int(delayed),
                 "dead": int(dead)},
                {hosts[i].decode(): float(hosts[i + 1]) / 1000 for i in range(0, len(hosts), 2)},
                int(created) / 1000,
                int(seen) / 1000 if seen else None,
            ))
        return infos
