"""Subscriptions in Redis: registering, keeping alive, listing and removing them; routing 0.1 data.

A mixin of :class:`~rocketman_redis.RedisStorage`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from rocketman_core import Registration, SubscriptionInfo

from . import _routing_scripts
from ._errors import StorageError
from ._layout import KeyLayout
from ._routing import STALE, Table
from ._wire import Script, Wire

__all__ = ["Subscriptions"]

logger = logging.getLogger("rocketman.redis")

_SUBSCRIBE = Script(_routing_scripts.SUBSCRIBE)
_KEEP_ALIVE = Script(_routing_scripts.KEEP_ALIVE)
_UNSUBSCRIBE = Script(_routing_scripts.UNSUBSCRIBE)
_LEAVE = Script(_routing_scripts.LEAVE)
_ROUTE = Script(_routing_scripts.ROUTE)

#: Subscriptions registered per SUBSCRIBE call at most: each new one may copy parked events.
_SUBSCRIBE_BATCH = 200
#: Events a router routes per ROUTE call at most.
_ROUTE_BATCH = 2000


#: Seconds the inbox router blocks before it looks whether the storage closed.
_ROUTER_BLOCK = 5.0
#: While events keep coming, the router routes at most this often (seconds).
_ROUTER_WINDOW = 0.001


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

    def _routing(self, table: Table, limit: int) -> tuple[list[str], list[Any]]:
        raise NotImplementedError  # provided by RedisStorage

    def subscribe(self, subscriptions: Sequence[Any], host: str) -> list[Registration]:
        """Create or update subscriptions, up to a batch per script call, after routing what waits.

        A new one copies the matching parked events in the same step. When
        nothing waits to be routed (as a rule when consumers are added), a
        call sends no table: it costs the same with ten subscriptions in
        Redis as with ten thousand.
        """
        done: list[Registration] = []
        for first in range(0, len(subscriptions), _SUBSCRIBE_BATCH):
            done += self._subscribe(subscriptions[first:first + _SUBSCRIBE_BATCH], host)
        self._start_router()
        return done

    def _subscribe(self, batch: Sequence[Any], host: str) -> list[Registration]:
        keys = self.keys
        own_keys: list[str] = [keys.created, keys.seen, keys.parked_marks]
        own_args: list[Any] = [host, len(batch)]
        for subscription in batch:
            sub = keys.subscription(subscription.name)
            own_keys += (sub.queue, sub.wake, sub.hosts)
            own_args += (subscription.name, " ".join(subscription.patterns), subscription.start)
        names = ", ".join(s.name for s in batch[:3]) + (", ..." if len(batch) > 3 else "")
        doing = f"register the subscription{'s' if len(batch) > 1 else ''} {names}"

        def build(table: Table) -> tuple[list[str], list[Any]]:
            script_keys, args = self._routing(table, 0)
            return [*script_keys, *own_keys], [*args, *own_args]

        script_keys, args = build(Table(keys))
        args[0] = _routing_scripts.NO_TABLE
        try:
            reply = self._wire.run(_SUBSCRIBE, script_keys, args)
        except RedisError as error:
            raise self._error(doing, error) from error
        if reply and reply[0] == STALE:  # events wait to be routed first: with the table
            self._table = Table.from_reply(keys, reply)
            reply = self._versioned(_SUBSCRIBE, build, doing)
        if reply[0]:
            self._count_evictions(int(reply[0]))
        return [
            Registration(subscription.name, bool(reply[1 + 3 * i]),
                         tuple(reply[2 + 3 * i].decode().split()) if reply[2 + 3 * i] else None,
                         int(reply[3 + 3 * i]))
            for i, subscription in enumerate(batch)
        ]

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
        """Route what arrives in the inbox, at once when it is quiet, in batches when it is busy.

        The router blocks in ``BLMOVE {ns}:queue {ns}:taking`` until an event
        comes (BLMOVE *moves* it, so a process killed before it routed it
        loses nothing: the next routing takes ``{ns}:taking`` first), then
        routes what waits with one script call. It routes at most once per
        ``_ROUTER_WINDOW``: an event after a quiet spell is routed at once,
        and a steady stream is routed in batches, a few microseconds of
        Redis per event rather than a script call each.
        """
        keys = self.keys
        failures = 0
        routed_at = float("-inf")

        def on_blocked(client_id: int | None) -> None:
            with self._lock:
                self._router_client = client_id
            if self._closed and client_id is not None:
                self._unblock([client_id])

        while not self._closed:
            try:
                moved = self._wire.block_move(keys.queue, keys.taking, _ROUTER_BLOCK,
                                              self.socket_timeout, on_blocked)
                if moved is None:
                    continue
                early = routed_at + _ROUTER_WINDOW - time.monotonic()
                if early > 0:
                    with self._interrupted:
                        if not self._closed:
                            self._interrupted.wait(early)
                self._route(limit=10 * _ROUTE_BATCH)
                routed_at = time.monotonic()
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
            self._route()
        return [name.decode() for name in missing]

    def _route(self, limit: int = 0) -> int:
        """Route what waits in the inbox (and what a 0.1 layout holds); return how many.

        ``limit`` bounds the work (0: until nothing waits, in calls of
        ``_ROUTE_BATCH``), so that a router thread never holds Redis long.
        """
        routed = 0
        while True:
            batch = _ROUTE_BATCH if not limit else min(_ROUTE_BATCH, limit - routed)
            moved, left, evicted = self._versioned(
                _ROUTE, functools.partial(self._routing, limit=batch), "route events")
            routed += int(moved)
            if evicted:
                self._count_evictions(int(evicted))
            if not left or not moved or (limit and routed >= limit):
                return routed

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
                *keys.dead_keys(), keys.seen, keys.parked_marks, keys.parked,
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
