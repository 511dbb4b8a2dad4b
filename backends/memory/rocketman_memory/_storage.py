"""The memory storage: a deque and a heap per subscription, under one lock."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import re
import threading
import time
from _thread import allocate_lock as _allocate_lock
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["MemoryStorage", "QueueFull", "StorageClosed"]

logger = logging.getLogger("rocketman.memory")

_ROUTE_CACHE_LIMIT = 10_000


def _count(option: str, value: Any, expected: str) -> int:
    """An integer option (a URL gives its text); a bool or a float is refused, not truncated.

    The message is rocketman_core.plugin's (this package does not import the core).
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    if number is None or number < 0:
        raise ValueError(f"memory storage: option {option!r} must be an integer, {expected}, "
                         f"not {value!r}")
    return number


def _seconds(option: str, value: Any) -> float:
    """A duration option: finite, at least 0, and short enough for every wait to take it."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not 0 <= number <= threading.TIMEOUT_MAX:  # NaN fails both
        raise ValueError(f"memory storage: option {option!r} must be a finite number of seconds, "
                         f"at least 0, not {value!r}")
    return number


class QueueFull(RuntimeError):
    """A bounded memory storage stayed full for longer than ``full_timeout``."""


class StorageClosed(RuntimeError):
    """An event pushed into a memory storage after ``close()``: it was not stored."""


class _DeadLetter(NamedTuple):
    # The same fields as rocketman_core.DeadLetter; this distribution does not
    # import the core at run time.
    id: str
    message: bytes
    reason: str
    failed_at: float
    subscription: str | None = None


class _Registration(NamedTuple):
    # The same fields as rocketman_core.Registration.
    name: str
    created: bool
    previous: tuple[str, ...] | None = None
    parked: int = 0


class _Info(NamedTuple):
    # The same fields as rocketman_core.SubscriptionInfo.
    name: str
    patterns: tuple[str, ...]
    counts: Mapping[str, int]
    hosts: Mapping[str, float]
    created_at: float
    last_seen: float | None = None


class _Watch:
    """The reserves waiting on one set of subscriptions: a condition variable on the storage's lock.

    ``threading.Condition`` written for the one use here: a push wakes a
    waiter on nearly every event when the workers keep up, and
    ``Condition.notify`` (an ownership test, a deque and an islice per
    call) was a tenth of the producer's time. Every method is called with
    the storage's lock held.
    """

    __slots__ = ("_lock", "_waiters", "names", "waiting")

    def __init__(self, lock: threading.Lock, names: tuple[str, ...]) -> None:
        self._lock = lock
        self._waiters: deque[Any] = deque()
        self.names = frozenset(names)
        #: How many reserves wait on this set now.
        self.waiting = 0

    def wait(self, timeout: float) -> None:
        """Release the lock until notified or ``timeout`` seconds passed, then take it again."""
        waiter = _allocate_lock()
        waiter.acquire()
        self._waiters.append(waiter)
        self._lock.release()
        woken = False
        try:
            woken = waiter.acquire(True, min(max(timeout, 0.0), threading.TIMEOUT_MAX))
        finally:
            self._lock.acquire()
            if not woken:  # timed out (or interrupted): still listed, unless a notify came meanwhile
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def notify(self, count: int = 1) -> None:
        """Wake up to ``count`` waiters."""
        waiters = self._waiters
        while waiters and count > 0:
            waiters.popleft().release()
            count -= 1

    def notify_all(self) -> None:
        self.notify(len(self._waiters))


class _Subscription:
    """One subscription's queue, delayed heap, counts and hosts."""

    __slots__ = ("created_at", "delayed", "hosts", "last_seen", "name", "patterns", "queue",
                 "regexes", "reserved")

    def __init__(self, name: str, patterns: tuple[str, ...]) -> None:
        self.name = name
        self.queue: deque[bytes] = deque()
        self.delayed: list[tuple[float, int, bytes]] = []
        self.reserved = 0
        self.hosts: dict[str, float] = {}
        self.last_seen: float | None = None
        self.created_at = time.time()
        self.patterns: tuple[str, ...] = ()
        self.regexes: list[re.Pattern[str]] = []
        self.set_patterns(patterns)

    def set_patterns(self, patterns: tuple[str, ...]) -> None:
        self.patterns = tuple(patterns)
        self.regexes = [
            re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")
            for pattern in self.patterns
        ]

    def matches(self, name: str) -> bool:
        return any(regex.match(name) for regex in self.regexes)


class _Delivery:
    __slots__ = ("_owner", "acked", "message", "subscription")

    def __init__(self, message: bytes, owner: _Subscription) -> None:
        self.message = message
        self.subscription = owner.name
        self._owner = owner
        self.acked = False

    def __repr__(self) -> str:
        return f"<memory delivery for {self.subscription} ({len(self.message)} bytes)>"


class MemoryStorage:
    """Subscriptions in this process's memory: fast, and lost if the process dies.

    Each subscription has a ``collections.deque`` and a heap of delayed
    retries, all under one lock: a push takes the lock once (whatever the
    number of subscriptions it routes to), and a worker takes every ready
    message it is due under one acquisition (``queue.Queue`` takes two locks
    per put and per get). Reserves wait on a condition per set of
    subscriptions, so a push wakes a worker that hosts the subscription it
    filled. An event no subscription matches is counted in
    ``stats()["dropped"]`` and dropped, as blinker drops a signal nobody
    receives: every consumer of a memory storage lives in this process.

    :param maxsize: the most queued messages, over every subscription; 0
        (default) is unbounded. When full, ``push`` blocks until a worker
        takes one, up to ``full_timeout`` seconds, then raises
        :class:`QueueFull`: producers slow down to the consumers' pace
        instead of growing memory without bound.
    :param full_timeout: see ``maxsize``.
    """

    contract_version = 2
    durable = False

    def __init__(self, maxsize: int | str = 0, full_timeout: float | str = 10.0,
                 url: str | None = None) -> None:
        self.maxsize = _count("maxsize", maxsize, "at least 0 (0: no bound)")
        self.full_timeout = _seconds("full_timeout", full_timeout)
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._subscriptions: dict[str, _Subscription] = {}
        self._routes: dict[str, tuple[_Subscription, ...]] = {}
        self._watches: dict[tuple[str, ...], _Watch] = {}
        self._queued = 0  # over every subscription, for maxsize
        self._rotation = itertools.count()
        self._order = itertools.count()
        self._interrupts = 0
        self._dropped = 0
        self._backlog = 0  # bytes of messages queued or delayed
        self._dead: dict[str, _DeadLetter] = {}
        self._dead_ids = itertools.count(1)
        self._closed: dict[str, int] | None = None  # after close(): what it held then

    # -- subscriptions -----------------------------------------------------

    def subscribe(self, subscriptions: Sequence[Any], host: str) -> list[Any]:
        """Create or update subscriptions (newest patterns win), hosted by ``host``."""
        now = time.time()
        done = []
        with self._lock:
            for subscription in subscriptions:
                name, patterns = subscription.name, tuple(subscription.patterns)
                existing = self._subscriptions.get(name)
                if existing is None:
                    existing = self._subscriptions[name] = _Subscription(name, patterns)
                    done.append(_Registration(name, True))
                elif existing.patterns != patterns:
                    previous = existing.patterns
                    existing.set_patterns(patterns)
                    done.append(_Registration(name, False, previous))
                else:
                    done.append(_Registration(name, False))
                existing.hosts[host] = existing.last_seen = now
            self._routes = {}
        return done

    def keep_alive(self, host: str, names: Sequence[str]) -> list[str]:
        """Record that ``host`` hosts ``names`` now; return the names that do not exist."""
        now = time.time()
        missing = []
        with self._lock:
            for name in names:
                subscription = self._subscriptions.get(name)
                if subscription is None:
                    missing.append(name)
                else:
                    subscription.hosts[host] = subscription.last_seen = now
        return missing

    def leave(self, host: str, names: Sequence[str]) -> None:
        """``host`` no longer hosts ``names``; they stay."""
        now = time.time()
        with self._lock:
            for name in names:
                subscription = self._subscriptions.get(name)
                if subscription is not None and subscription.hosts.pop(host, None) is not None:
                    subscription.last_seen = now

    def unsubscribe(self, name: str) -> bool:
        """Remove a subscription with its queue, retries and dead letters."""
        with self._lock:
            subscription = self._subscriptions.pop(name, None)
            if subscription is None:
                return False
            self._queued -= len(subscription.queue)
            self._backlog -= (sum(map(len, subscription.queue))
                              + sum(len(message) for _, _, message in subscription.delayed))
            subscription.queue.clear()
            subscription.delayed.clear()
            self._dead = {i: d for i, d in self._dead.items() if d.subscription != name}
            self._routes = {}
            if self.maxsize:
                self._not_full.notify_all()
            return True

    def subscriptions(self) -> list[Any]:
        """Every subscription with its patterns, counts and hosts."""
        with self._lock:
            now = time.monotonic()
            dead: dict[str | None, int] = {}
            for letter in self._dead.values():
                dead[letter.subscription] = dead.get(letter.subscription, 0) + 1
            infos = []
            for name in sorted(self._subscriptions):
                subscription = self._subscriptions[name]
                self._promote(subscription, now)
                infos.append(_Info(name, subscription.patterns, {
                    "queued": len(subscription.queue),
                    "reserved": subscription.reserved,
                    "delayed": len(subscription.delayed),
                    "dead": dead.get(name, 0),
                }, dict(subscription.hosts), subscription.created_at, subscription.last_seen))
            return infos

    def _route(self, name: str) -> tuple[_Subscription, ...]:
        found = tuple(s for s in self._subscriptions.values() if s.matches(name))
        if len(self._routes) >= _ROUTE_CACHE_LIMIT:
            self._routes = {}
        self._routes[name] = found
        return found

    # -- pushing -----------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        if self._closed is not None:
            raise StorageClosed(
                "the memory storage is closed (its runtime shut down): this event was not stored")

    def push(self, name: str, message: bytes) -> None:
        """Queue ``message`` for every subscription matching ``name``; with ``maxsize``, wait for room.

        Raises :class:`StorageClosed` after :meth:`close`: an event emitted
        while its runtime shuts down is refused, never silently lost.
        """
        with self._lock:
            if self._closed is not None:
                self._refuse_if_closed()
            targets = self._routes.get(name)
            if targets is None:
                targets = self._route(name)
            if not targets:
                self._dropped += 1
                return
            if self.maxsize and self._queued + len(targets) > self.maxsize:
                self._wait_for_room(len(targets))
            for subscription in targets:
                subscription.queue.append(message)
                self._notify(subscription.name, 1)
            self._queued += len(targets)
            self._backlog += len(message) * len(targets)

    def push_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        """Queue several events in order, under one lock when there is room."""
        with self._lock:
            self._refuse_if_closed()
            routes = self._routes
            woken: set[_Subscription] = set()
            for name, message in events:
                targets = routes.get(name)
                if targets is None:
                    targets = self._route(name)
                    routes = self._routes
                if not targets:
                    self._dropped += 1
                    continue
                if self.maxsize and self._queued + len(targets) > self.maxsize:
                    self._wake(woken)
                    woken = set()
                    self._wait_for_room(len(targets))
                for subscription in targets:
                    subscription.queue.append(message)
                    woken.add(subscription)
                self._queued += len(targets)
                self._backlog += len(message) * len(targets)
            self._wake(woken)

    async def push_async(self, name: str, message: bytes) -> None:
        """:meth:`push` for a coroutine: at once when unbounded (it never waits then).

        With ``maxsize``, a push may wait for room for up to
        ``full_timeout``: it waits in a thread, and the event loop goes on.
        """
        if not self.maxsize:
            self.push(name, message)
            return
        import asyncio

        await asyncio.to_thread(self.push, name, message)

    async def push_many_async(self, events: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`push_many` for a coroutine, like :meth:`push_async`."""
        if not self.maxsize:
            self.push_many(events)
            return
        import asyncio

        await asyncio.to_thread(self.push_many, events)

    def _wake(self, subscriptions: set[_Subscription]) -> None:
        for subscription in subscriptions:
            self._notify(subscription.name, len(subscription.queue))

    def _notify(self, name: str, count: int) -> None:
        """Wake up to ``count`` reserves waiting on a set of subscriptions that includes ``name``."""
        for watch in self._watches.values():
            if watch.waiting and name in watch.names:
                watch.notify(count)

    def _wait_for_room(self, needed: int) -> None:
        deadline = time.monotonic() + self.full_timeout
        while self._queued + needed > max(self.maxsize, needed):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueueFull(
                    f"the memory storage stayed full ({self.maxsize} queued events) for "
                    f"{self.full_timeout}s: consumers are slower than producers, or no worker "
                    "runs. Add workers, raise maxsize, or emit less."
                )
            self._not_full.wait(remaining)

    # -- reserving ---------------------------------------------------------

    def _promote(self, subscription: _Subscription, now: float) -> int:
        delayed = subscription.delayed
        moved = 0
        while delayed and delayed[0][0] <= now:
            subscription.queue.append(heapq.heappop(delayed)[2])
            moved += 1
        self._queued += moved
        return moved

    def _watch(self, names: tuple[str, ...]) -> _Watch:
        watch = self._watches.get(names)
        if watch is None:
            # A runtime's set of subscriptions changes as consumers are added:
            # forget the sets nobody waits on, so that a push looks at a few
            # watches, not one per set there ever was.
            self._watches = {key: w for key, w in self._watches.items() if w.waiting}
            watch = self._watches[names] = _Watch(self._lock, names)
        return watch

    def reserve(self, subscriptions: Sequence[str], timeout: float, max_count: int = 1) -> list[Any]:
        """Take up to ``max_count`` ready messages of ``subscriptions``, fairly, blocking up to ``timeout``."""
        deadline = time.monotonic() + timeout
        names = tuple(subscriptions)
        with self._lock:
            interrupts = self._interrupts
            watch = self._watch(names)
            while True:
                hosted = [s for s in map(self._subscriptions.get, names) if s is not None]
                now = time.monotonic()
                due_at = float("inf")
                for subscription in hosted:
                    if subscription.delayed:
                        self._promote(subscription, now)
                        if subscription.delayed:
                            due_at = min(due_at, subscription.delayed[0][0])
                taken = self._take(hosted, max_count, watch.waiting) if self._queued else []
                if taken:
                    return taken
                remaining = deadline - now
                if remaining <= 0 or interrupts != self._interrupts:
                    return []
                watch.waiting += 1
                try:
                    watch.wait(min(remaining, due_at - now))
                finally:
                    watch.waiting -= 1

    def _take(self, hosted: list[_Subscription], max_count: int, waiting: int) -> list[_Delivery]:
        """Take from the hosted queues, starting at a rotating one, so none starves."""
        count = len(hosted)
        if not count:
            return []
        first = next(self._rotation) % count
        taken: list[_Delivery] = []
        for step in range(count):
            subscription = hosted[(first + step) % count]
            queue = subscription.queue
            if not queue:
                continue
            want = min(max_count - len(taken), len(queue))
            if waiting and want > 1:
                # Leave a share for the workers that are waiting too.
                want = min(want, -(-len(queue) // (waiting + 1)))
            taken.extend(_Delivery(queue.popleft(), subscription) for _ in range(want))
            subscription.reserved += want
            if len(taken) >= max_count:
                break
        if taken:
            self._queued -= len(taken)
            self._backlog -= sum(len(delivery.message) for delivery in taken)
            if self.maxsize:
                self._not_full.notify(len(taken))
        return taken

    def interrupt(self) -> None:
        """Wake every worker blocked in ``reserve`` now, so that it can stop."""
        with self._lock:
            self._interrupts += 1
            for watch in self._watches.values():
                watch.notify_all()

    def _settle(self, delivery: _Delivery) -> bool:
        """Mark ``delivery`` done; False when it already was (or its subscription is gone)."""
        if delivery.acked:
            return False
        delivery.acked = True
        owner = delivery._owner
        if owner.reserved > 0:
            owner.reserved -= 1
        return self._subscriptions.get(owner.name) is owner

    def ack(self, deliveries: Sequence[Any]) -> None:
        """Forget the deliveries; acknowledging one twice changes nothing."""
        with self._lock:
            for delivery in deliveries:
                self._settle(delivery)

    def release(self, deliveries: Sequence[Any]) -> None:
        """Give unhandled deliveries back to the front of their queues, in order."""
        with self._lock:
            for delivery in reversed(deliveries):
                if self._settle(delivery):
                    delivery._owner.queue.appendleft(delivery.message)
                    self._queued += 1
                    self._backlog += len(delivery.message)
                    self._notify(delivery.subscription, 1)

    def renew(self, deliveries: Sequence[Any]) -> None:
        """Nothing to renew: memory deliveries have no lease."""

    # -- retries and dead letters ------------------------------------------

    def retry_later(self, delivery: Any, message: bytes, delay: float) -> None:
        """Replace ``delivery`` by ``message`` in its subscription's heap, due ``delay`` seconds from now."""
        with self._lock:
            if not self._settle(delivery):
                return
            owner = delivery._owner
            heapq.heappush(owner.delayed, (time.monotonic() + delay, next(self._order), message))
            self._backlog += len(message)
            self._notify(owner.name, 1)  # a waiting worker shortens its wait to the new due time

    def dead_letter(self, delivery: Any, message: bytes, reason: str) -> None:
        """Replace ``delivery`` by the dead letter ``message`` with ``reason``."""
        with self._lock:
            if not self._settle(delivery):
                return
            letter_id = str(next(self._dead_ids))
            self._dead[letter_id] = _DeadLetter(letter_id, message, reason, time.time(),
                                                delivery.subscription)

    def dead_letters(self, limit: int | None = None, subscription: str | None = None) -> list[Any]:
        """The dead letters, oldest first."""
        with self._lock:
            letters = [d for d in self._dead.values()
                       if subscription is None or d.subscription == subscription]
        return letters[:limit] if limit is not None else letters

    def replay_dead_letters(self, replacements: Mapping[str, tuple[str, bytes]]) -> int:
        """Queue each replacement for its subscription in place of its dead letter, atomically."""
        with self._lock:
            replayed = 0
            for letter_id, (name, message) in replacements.items():
                subscription = self._subscriptions.get(name)
                if subscription is None or self._dead.pop(letter_id, None) is None:
                    continue
                subscription.queue.append(message)
                self._queued += 1
                self._backlog += len(message)
                replayed += 1
                self._notify(name, 1)
            return replayed

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters, or all of them."""
        with self._lock:
            if ids is None:
                count = len(self._dead)
                self._dead.clear()
                return count
            return sum(self._dead.pop(i, None) is not None for i in ids)

    # -- stats and lifecycle -----------------------------------------------

    def backlog_bytes(self) -> int:
        """Bytes of the messages queued or waiting for a retry (what a relay may add to is bounded on it)."""
        return self._backlog

    def stats(self) -> dict[str, int]:
        """A consistent snapshot of the totals; after :meth:`close`, what it held when it closed."""
        with self._lock:
            if self._closed is not None:
                return dict(self._closed)
            return self._counts()

    def _counts(self) -> dict[str, int]:
        now = time.monotonic()
        reserved = delayed = 0
        for subscription in self._subscriptions.values():
            if subscription.delayed:
                self._promote(subscription, now)
                delayed += len(subscription.delayed)
            reserved += subscription.reserved
        return {
            "queued": self._queued,
            "reserved": reserved,
            "delayed": delayed,
            "dead": len(self._dead),
            "parked": 0,
            "dropped": self._dropped,
        }

    def close(self) -> None:
        """Drop everything held, and refuse pushes from now on. Idempotent.

        In the same step it keeps the counts of what it dropped, which
        :meth:`stats` returns from then on: the core's WARNING counts exactly
        what was lost, an event pushed a moment later is refused.
        """
        with self._lock:
            if self._closed is not None:
                return
            self._closed = self._counts()
            for subscription in self._subscriptions.values():
                subscription.queue.clear()
                subscription.delayed.clear()
                subscription.reserved = 0
            self._queued = self._backlog = 0
            self._interrupts += 1
            for watch in self._watches.values():
                watch.notify_all()

    def __repr__(self) -> str:
        return f"MemoryStorage(maxsize={self.maxsize}, subscriptions={len(self._subscriptions)})"
