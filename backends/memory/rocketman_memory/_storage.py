"""The memory storage: a deque and a heap under one condition."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MemoryStorage", "QueueFull"]

logger = logging.getLogger("rocketman.memory")


class QueueFull(RuntimeError):
    """A bounded memory storage stayed full for longer than ``full_timeout``."""


class _Delivery:
    __slots__ = ("acked", "message")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self.acked = False


@dataclass(frozen=True)
class _DeadLetter:
    # The same fields as rocketman_core.DeadLetter; this distribution does not
    # import the core at run time.
    id: str
    message: bytes
    reason: str
    failed_at: float


class MemoryStorage:
    """A queue in this process's memory: fast, and lost if the process dies.

    ``collections.deque`` and one ``threading.Condition``: a push takes the
    lock once, and a worker takes every ready message it is due under one
    acquisition (``queue.Queue`` takes two locks per put and per get). Retries
    wait in a heap ordered by due time, checked by the same condition's
    timeout.

    :param maxsize: the most queued messages; 0 (default) is unbounded. When
        full, ``push`` blocks until a worker takes one, up to ``full_timeout``
        seconds, then raises :class:`QueueFull`: producers slow down to the
        consumers' pace instead of growing memory without bound.
    :param full_timeout: see ``maxsize``.
    """

    durable = False

    def __init__(self, maxsize: int | str = 0, full_timeout: float | str = 10.0,
                 url: str | None = None) -> None:
        try:
            self.maxsize = int(maxsize)
            self.full_timeout = float(full_timeout)
        except ValueError:
            raise ValueError(
                f"memory storage: maxsize must be an integer and full_timeout a number, "
                f"not {maxsize!r} and {full_timeout!r}"
            ) from None
        if self.maxsize < 0:
            raise ValueError(f"memory storage: maxsize must be 0 or more, not {self.maxsize}")
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._delayed: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self._reserved = 0
        self._waiting = 0
        self._interrupts = 0
        self._dead: dict[str, _DeadLetter] = {}
        self._dead_ids = itertools.count(1)

    # -- pushing ---------------------------------------------------------

    def push(self, message: bytes) -> None:
        """Queue one message; with ``maxsize``, wait for room."""
        with self._lock:
            if self.maxsize and len(self._queue) >= self.maxsize:
                self._wait_for_room()
            self._queue.append(message)
            if self._waiting:
                self._ready.notify()

    def push_many(self, messages: Sequence[bytes]) -> None:
        """Queue several messages in order, under one lock when there is room."""
        with self._lock:
            for message in messages:
                if self.maxsize and len(self._queue) >= self.maxsize:
                    self._wait_for_room()
                self._queue.append(message)
            if self._waiting:
                self._ready.notify(len(messages))

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.full_timeout
        if self._waiting:
            # push_many notifies once at the end of its batch; a batch larger
            # than the room left gets here first, and the workers that would
            # make room must not sleep on messages already queued.
            self._ready.notify(len(self._queue))
        while len(self._queue) >= self.maxsize:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueueFull(
                    f"the memory storage stayed full ({self.maxsize} queued events) for "
                    f"{self.full_timeout}s: consumers are slower than producers, or no worker "
                    "runs. Add workers, raise maxsize, or emit less."
                )
            self._not_full.wait(remaining)

    # -- reserving -------------------------------------------------------

    def _promote(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._queue.append(heapq.heappop(delayed)[2])

    def reserve(self, timeout: float, max_count: int = 1) -> list[Any]:
        """Take up to ``max_count`` ready messages, blocking up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            interrupts = self._interrupts
            while True:
                if self._delayed:
                    self._promote(time.monotonic())
                queue = self._queue
                if queue:
                    count = min(max_count, len(queue))
                    if self._waiting and count > 1:
                        # Leave a share for the workers that are waiting too.
                        count = min(count, -(-len(queue) // (self._waiting + 1)))
                    taken = [_Delivery(queue.popleft()) for _ in range(count)]
                    self._reserved += count
                    if self.maxsize:
                        self._not_full.notify(count)
                    return taken
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0 or interrupts != self._interrupts:
                    return []
                if self._delayed:
                    remaining = min(remaining, self._delayed[0][0] - now)
                self._waiting += 1
                try:
                    self._ready.wait(remaining)
                finally:
                    self._waiting -= 1

    def interrupt(self) -> None:
        """Wake every worker blocked in ``reserve`` now, so that it can stop."""
        with self._lock:
            self._interrupts += 1
            self._ready.notify_all()

    def ack(self, deliveries: Sequence[Any]) -> None:
        """Forget the deliveries; acknowledging one twice changes nothing."""
        with self._lock:
            for delivery in deliveries:
                if not delivery.acked:
                    delivery.acked = True
                    self._reserved -= 1
            if self._reserved < 0:  # acknowledged after close(), which forgot them
                self._reserved = 0

    def renew(self, deliveries: Sequence[Any]) -> None:
        """Nothing to renew: memory deliveries have no lease."""

    # -- retries and dead letters ----------------------------------------

    def retry_later(self, message: bytes, delay: float) -> None:
        """Keep ``message`` in the heap until ``delay`` seconds from now."""
        with self._lock:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._order), message))
            if self._waiting:
                # A waiting worker must shorten its wait to the new due time.
                self._ready.notify()

    def dead_letter(self, message: bytes, reason: str) -> None:
        """Keep ``message`` aside with ``reason``."""
        with self._lock:
            letter_id = str(next(self._dead_ids))
            self._dead[letter_id] = _DeadLetter(letter_id, message, reason, time.time())

    def dead_letters(self, limit: int | None = None) -> list[Any]:
        """The dead letters, oldest first."""
        with self._lock:
            letters = list(self._dead.values())
        return letters[:limit] if limit is not None else letters

    def replay_dead_letters(self, replacements: Mapping[str, bytes]) -> int:
        """Queue each replacement in place of its dead letter, atomically."""
        with self._lock:
            replayed = 0
            for letter_id, message in replacements.items():
                if self._dead.pop(letter_id, None) is not None:
                    self._queue.append(message)
                    replayed += 1
            if replayed and self._waiting:
                self._ready.notify(replayed)
            return replayed

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the named dead letters, or all of them."""
        with self._lock:
            if ids is None:
                count = len(self._dead)
                self._dead.clear()
                return count
            return sum(self._dead.pop(i, None) is not None for i in ids)

    # -- stats and lifecycle ---------------------------------------------

    def stats(self) -> dict[str, int]:
        """A consistent snapshot of the counts."""
        with self._lock:
            if self._delayed:
                self._promote(time.monotonic())
            return {
                "queued": len(self._queue),
                "reserved": self._reserved,
                "delayed": len(self._delayed),
                "dead": len(self._dead),
            }

    def close(self) -> None:
        """Drop everything held (the core counts it in a warning first)."""
        with self._lock:
            self._queue.clear()
            self._delayed.clear()
            self._reserved = 0
            self._interrupts += 1
            self._ready.notify_all()

    def __repr__(self) -> str:
        return f"MemoryStorage(maxsize={self.maxsize})"
