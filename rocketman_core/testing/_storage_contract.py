"""The storage conformance kit: every promise of :class:`rocketman_core.Storage`, as tests.

A storage runs it by subclassing :class:`StorageContract` in one of its test
modules and providing a ``storage`` fixture::

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self) -> Iterator[Storage]:
            s = MyStorage(...)   # fresh and EMPTY for every test
            yield s
            s.close()
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .._contracts import STATS_KEYS, Storage
from ._deadlines import wait_until

__all__ = ["StorageContract"]

#: Bytes a storage must carry untouched: NUL, bytes that are not UTF-8, a large blob.
AWKWARD_MESSAGES = (
    b'{"name": "plain"}',
    b"\x00\x01\x02 nul and control bytes",
    b"\xff\xfe\x80\xc3\x28 not UTF-8 \xed\xa0\x80",
    "caf\u00e9 \u2603 \U0001f680".encode(),
    bytes(range(256)) * 400,
)


class _ReserveInThread:
    """A ``reserve`` blocked in another thread, and the moment it returned."""

    def __init__(self, storage: Storage, timeout: float, max_count: int = 1) -> None:
        self.result: list[Any] | None = None
        self.error: BaseException | None = None
        self.returned_at: float | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(storage, timeout, max_count),
            name="rocketman-kit-reserve", daemon=True,
        )
        self._thread.start()
        self._started.wait(5)

    def _run(self, storage: Storage, timeout: float, max_count: int) -> None:
        self._started.set()
        try:
            self.result = storage.reserve(timeout, max_count)
        except BaseException as error:  # handed to the test thread by join()
            self.error = error
        finally:
            self.returned_at = time.monotonic()

    def join(self, timeout: float) -> list[Any]:
        """The deliveries the reserve returned; fails if it is still blocked after ``timeout``."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"reserve still blocked {timeout}s later"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class StorageContract:
    """Tests of the :class:`rocketman_core.Storage` promises; subclass it and provide ``storage``.

    The ``storage`` fixture yields a fresh, empty storage and closes it
    afterwards. Storages behind a slow server can relax the timing with the
    class attributes below.
    """

    #: The ``timeout`` of a reserve that is expected to find nothing, in seconds.
    reserve_timeout: float = 0.3
    #: How much later than its timeout or due time a blocking call may return.
    timing_tolerance: float = 0.3
    #: How soon a reserve blocked in another thread must return after a push.
    wake_within: float = 0.25
    #: The delay given to ``retry_later`` by the tests, in seconds.
    retry_delay: float = 0.5
    #: Time to let another thread enter its blocking ``reserve`` before acting.
    block_settle: float = 0.2
    #: Deadline for things that become true eventually (a due retry, a reserve).
    settle_timeout: float = 10.0
    #: Messages each of the 4 producer threads pushes in the thread-safety test.
    messages_per_producer: int = 2500
    #: Deadline of the whole thread-safety test.
    concurrency_timeout: float = 60.0
    #: Tolerated difference between this machine's clock and the storage's.
    clock_tolerance: float = 2.0

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        """A fresh, empty storage, closed afterwards: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `storage` fixture "
                    "yielding a fresh, empty storage")
        yield  # pragma: no cover

    # -- helpers ---------------------------------------------------------

    def _reserve_exactly(self, storage: Storage, count: int, max_count: int = 1) -> list[Any]:
        """Reserve until ``count`` deliveries arrived, failing after ``settle_timeout``."""
        deliveries: list[Any] = []
        deadline = time.monotonic() + self.settle_timeout
        while len(deliveries) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"only {len(deliveries)} of {count} pushed messages could be reserved "
                f"within {self.settle_timeout}s")
            batch = storage.reserve(min(remaining, 1.0), max_count)
            assert len(batch) <= max_count, f"reserve(max_count={max_count}) took {len(batch)}"
            deliveries.extend(batch)
        assert len(deliveries) == count, f"reserved {len(deliveries)} messages, {count} were queued"
        return deliveries

    def _assert_stats(self, storage: Storage, **expected: int) -> None:
        counts = {key: 0 for key in STATS_KEYS}
        counts.update(expected)
        assert storage.stats() == counts

    def _stats_become(self, storage: Storage, failure: str, **expected: int) -> None:
        counts = {key: 0 for key in STATS_KEYS}
        counts.update(expected)
        wait_until(lambda: storage.stats() == counts, self.settle_timeout,
                   f"{failure}: stats() stayed {storage.stats()}, expected {counts}")

    def _let_block(self, reserving: _ReserveInThread) -> None:
        # Nothing says from outside that a thread is inside a blocking call:
        # give it a moment to get there, so the test measures a wake-up and
        # not a reserve that found the message already queued.
        time.sleep(self.block_settle)
        assert reserving.returned_at is None, "reserve returned before anything was queued"

    # -- push and reserve ------------------------------------------------

    def test_reserve_returns_the_exact_bytes_pushed(self, storage: Storage) -> None:
        """A message comes back byte for byte: NUL, non-UTF-8 bytes and 100 KB included."""
        for message in AWKWARD_MESSAGES:
            storage.push(message)
        deliveries = self._reserve_exactly(storage, len(AWKWARD_MESSAGES))
        assert [d.message for d in deliveries] == list(AWKWARD_MESSAGES)
        assert all(type(d.message) is bytes for d in deliveries), "Delivery.message must be bytes"

    def test_one_consumer_receives_messages_in_push_order(self, storage: Storage) -> None:
        """With one consumer, messages are delivered in the order they were pushed (FIFO)."""
        pushed = [f"message {n}".encode() for n in range(20)]
        for message in pushed:
            storage.push(message)
        received = [d.message for d in self._reserve_exactly(storage, len(pushed))]
        assert received == pushed

    def test_reserve_takes_several_ready_messages_up_to_max_count(self, storage: Storage) -> None:
        """``max_count`` is never exceeded, and more than one is taken when several are ready."""
        pushed = [f"batch {n}".encode() for n in range(10)]
        for message in pushed:
            storage.push(message)
        first = storage.reserve(self.settle_timeout, 4)
        assert 2 <= len(first) <= 4, (
            f"reserve(max_count=4) with 10 ready messages took {len(first)}: "
            "it must take more than one when they are ready at once, and never more than 4")
        rest = self._reserve_exactly(storage, len(pushed) - len(first), max_count=4)
        assert [d.message for d in first + rest] == pushed
        storage.ack(first + rest)
        self._assert_stats(storage)

    def test_reserve_on_an_empty_storage_returns_nothing_after_about_timeout(
        self, storage: Storage
    ) -> None:
        """An empty storage blocks for about ``timeout`` (not much less, not much more), then []."""
        timeout = self.reserve_timeout
        started = time.monotonic()
        result = storage.reserve(timeout, 5)
        elapsed = time.monotonic() - started
        assert result == []
        assert elapsed >= timeout * 0.9, f"reserve({timeout}) gave up after {elapsed:.3f}s"
        assert elapsed <= timeout + self.timing_tolerance, (
            f"reserve({timeout}) returned only after {elapsed:.3f}s")

    def test_a_blocked_reserve_wakes_promptly_when_a_message_is_pushed(
        self, storage: Storage
    ) -> None:
        """A reserve waiting with a long timeout returns the message as soon as it is pushed."""
        reserving = _ReserveInThread(storage, timeout=self.settle_timeout)
        self._let_block(reserving)
        pushed_at = time.monotonic()
        storage.push(b"wake up")
        deliveries = reserving.join(self.settle_timeout)
        assert [d.message for d in deliveries] == [b"wake up"]
        assert reserving.returned_at is not None
        latency = reserving.returned_at - pushed_at
        assert latency < self.wake_within, (
            f"the blocked reserve returned {latency:.3f}s after the push: it polls "
            "instead of waking up")

    def test_push_many_queues_in_order(self, storage: Storage) -> None:
        """``push_many`` queues every message, in order; an empty list queues nothing."""
        storage.push(b"before")
        storage.push_many([])
        storage.push_many([f"many {n}".encode() for n in range(50)] + [b"\xff\x00"])
        storage.push(b"after")
        expected = [b"before", *(f"many {n}".encode() for n in range(50)), b"\xff\x00", b"after"]
        self._assert_stats(storage, queued=len(expected))
        received = [d.message for d in self._reserve_exactly(storage, len(expected), 10)]
        assert received == expected

    # -- acknowledging ---------------------------------------------------

    def test_ack_removes_deliveries_from_reserved(self, storage: Storage) -> None:
        """A reserved message counts as ``reserved`` until acknowledged, then is gone."""
        storage.push_many([b"one", b"two", b"three"])
        deliveries = self._reserve_exactly(storage, 3)
        self._assert_stats(storage, reserved=3)
        storage.ack(deliveries[:1])
        self._assert_stats(storage, reserved=2)
        storage.ack(deliveries[1:])
        self._assert_stats(storage)
        assert storage.reserve(self.reserve_timeout) == [], "an acknowledged message came back"

    def test_acknowledging_twice_changes_nothing(self, storage: Storage) -> None:
        """A second ack of the same delivery is not an error and counts nothing twice."""
        storage.push_many([b"acked twice", b"still reserved"])
        first, second = self._reserve_exactly(storage, 2)
        storage.ack([first])
        storage.ack([first])
        storage.ack([first, first])
        self._assert_stats(storage, reserved=1)
        storage.ack([second])
        self._assert_stats(storage)

    def test_renew_accepts_reserved_deliveries(self, storage: Storage) -> None:
        """``renew`` takes held deliveries (and an empty list) without error or side effect."""
        storage.push_many([b"held", b"long"])
        deliveries = self._reserve_exactly(storage, 2)
        storage.renew(deliveries)
        storage.renew([])
        self._assert_stats(storage, reserved=2)
        storage.ack(deliveries)
        self._assert_stats(storage)

    # -- retries ---------------------------------------------------------

    def test_retry_later_keeps_a_message_delayed_until_it_is_due(self, storage: Storage) -> None:
        """A retried message is ``delayed`` and not reservable before its delay, queued after."""
        delay = self.retry_delay
        scheduled = time.monotonic()
        storage.retry_later(b"\xfe retry me", delay)
        stats = storage.stats()
        early = storage.reserve(delay / 4)
        # Judge only what happened before the due time: a stalled machine may
        # legitimately get here late.
        if time.monotonic() - scheduled < delay:
            assert stats == {**dict.fromkeys(STATS_KEYS, 0), "delayed": 1}, stats
            assert early == [], "a delayed message was reserved before its due time"
        deliveries = early
        if not deliveries:
            self._stats_become(storage, "a delayed message never became queued", queued=1)
            due_after = time.monotonic() - scheduled
            assert due_after >= delay * 0.9, f"delayed {delay}s, it was queued after {due_after:.3f}s"
            deliveries = self._reserve_exactly(storage, 1)
        assert [d.message for d in deliveries] == [b"\xfe retry me"]
        storage.ack(deliveries)
        self._assert_stats(storage)

    def test_a_blocked_reserve_wakes_when_a_delay_expires(self, storage: Storage) -> None:
        """A reserve blocked with a long timeout returns a retried message when it is due."""
        reserving = _ReserveInThread(storage, timeout=self.settle_timeout)
        self._let_block(reserving)
        delay = self.retry_delay
        scheduled = time.monotonic()
        storage.retry_later(b"due soon", delay)
        deliveries = reserving.join(self.settle_timeout)
        assert [d.message for d in deliveries] == [b"due soon"]
        assert reserving.returned_at is not None
        waited = reserving.returned_at - scheduled
        assert waited >= delay * 0.9, f"a message delayed {delay}s was reserved after {waited:.3f}s"
        assert waited <= delay + self.timing_tolerance, (
            f"a message delayed {delay}s reached the blocked reserve only after {waited:.3f}s")

    # -- dead letters ----------------------------------------------------

    def test_dead_letters_keep_message_reason_and_time_oldest_first(
        self, storage: Storage
    ) -> None:
        """Each dead letter has a unique id, the exact bytes, the reason and failed_at."""
        before = time.time()
        storage.dead_letter(b"\xff first", "Traceback: ValueError: \u00e9chec")
        storage.dead_letter(b"second", "second reason")
        storage.dead_letter(b"third", "third reason")
        after = time.time()
        letters = storage.dead_letters()
        assert [letter.message for letter in letters] == [b"\xff first", b"second", b"third"]
        assert [letter.reason for letter in letters] == [
            "Traceback: ValueError: \u00e9chec", "second reason", "third reason"]
        assert len({letter.id for letter in letters}) == 3
        assert all(isinstance(letter.id, str) and letter.id for letter in letters)
        for letter in letters:
            assert before - self.clock_tolerance <= letter.failed_at <= after + self.clock_tolerance
        self._assert_stats(storage, dead=3)

    def test_dead_letters_limit(self, storage: Storage) -> None:
        """``dead_letters(limit=n)`` gives the n oldest."""
        for n in range(5):
            storage.dead_letter(f"letter {n}".encode(), "reason")
        assert [x.message for x in storage.dead_letters(limit=2)] == [b"letter 0", b"letter 1"]
        assert len(storage.dead_letters(limit=10)) == 5
        assert len(storage.dead_letters()) == 5

    def test_a_dead_letter_is_not_delivered(self, storage: Storage) -> None:
        """A dead-lettered message is kept aside: reserve does not hand it out."""
        storage.dead_letter(b"poison", "malformed")
        assert storage.reserve(self.reserve_timeout) == []
        self._assert_stats(storage, dead=1)

    def test_replay_dead_letters_queues_the_replacement_in_place(self, storage: Storage) -> None:
        """Replaying queues the replacement, removes the letter, ignores unknown ids, counts."""
        storage.dead_letter(b"failed a", "a")
        storage.dead_letter(b"failed b", "b")
        letter_a, letter_b = storage.dead_letters()
        replayed = storage.replay_dead_letters(
            {letter_a.id: b"replacement \xff a", "no-such-dead-letter": b"ignored"})
        assert replayed == 1
        assert [x.id for x in storage.dead_letters()] == [letter_b.id]
        self._assert_stats(storage, queued=1, dead=1)
        deliveries = self._reserve_exactly(storage, 1)
        assert [d.message for d in deliveries] == [b"replacement \xff a"]
        storage.ack(deliveries)
        assert storage.replay_dead_letters({letter_a.id: b"again"}) == 0, "replayed twice"
        assert storage.replay_dead_letters({}) == 0
        self._assert_stats(storage, dead=1)

    def test_purge_dead_letters_by_ids_and_all(self, storage: Storage) -> None:
        """Purging deletes the named dead letters (unknown ids ignored), or all; returns counts."""
        for n in range(4):
            storage.dead_letter(f"purge {n}".encode(), "reason")
        letters = storage.dead_letters()
        assert storage.purge_dead_letters([letters[1].id, "no-such-dead-letter"]) == 1
        assert [x.id for x in storage.dead_letters()] == [letters[0].id, letters[2].id, letters[3].id]
        assert storage.purge_dead_letters([]) == 0
        assert storage.purge_dead_letters() == 3
        assert storage.dead_letters() == []
        assert storage.purge_dead_letters() == 0
        self._assert_stats(storage)

    # -- stats and lifecycle ---------------------------------------------

    def test_stats_has_exactly_the_stats_keys(self, storage: Storage) -> None:
        """``stats()`` has the keys of STATS_KEYS, integer counts, all zero when empty."""
        stats = storage.stats()
        assert set(stats) == set(STATS_KEYS)
        assert all(type(value) is int for value in stats.values()), stats
        assert stats == dict.fromkeys(STATS_KEYS, 0)

    def test_stats_count_each_place(self, storage: Storage) -> None:
        """Each message counts in exactly one place: queued, reserved, delayed or dead."""
        storage.push_many([b"q1", b"q2", b"q3"])
        self._assert_stats(storage, queued=3)
        deliveries = self._reserve_exactly(storage, 1)
        self._assert_stats(storage, queued=2, reserved=1)
        storage.retry_later(b"later", 3600)
        self._assert_stats(storage, queued=2, reserved=1, delayed=1)
        storage.dead_letter(b"dead", "reason")
        self._assert_stats(storage, queued=2, reserved=1, delayed=1, dead=1)
        storage.ack(deliveries)
        self._assert_stats(storage, queued=2, delayed=1, dead=1)

    def test_close_is_idempotent(self, storage: Storage) -> None:
        """Closing twice is not an error (the fixture closes a third time)."""
        storage.push(b"left behind")
        storage.close()
        storage.close()

    # -- threads ---------------------------------------------------------

    def test_concurrent_producers_and_consumers_deliver_each_message_once(
        self, storage: Storage
    ) -> None:
        """4 producers and 4 consumers at once: every message delivered once, stats zero after."""
        per_producer, batch = self.messages_per_producer, 16
        expected = {f"p{p}-{n}".encode() for p in range(4) for n in range(per_producer)}
        received: list[list[bytes]] = [[] for _ in range(4)]
        errors: list[BaseException] = []
        lock, done = threading.Lock(), threading.Event()
        total = [0]

        def produce(producer: int) -> None:
            messages = [f"p{producer}-{n}".encode() for n in range(per_producer)]
            if producer % 2:  # half push one by one, half push_many in chunks
                for start in range(0, per_producer, 50):
                    storage.push_many(messages[start:start + 50])
            else:
                for message in messages:
                    storage.push(message)

        def consume(consumer: int) -> None:
            while not done.is_set():
                deliveries = storage.reserve(self.reserve_timeout, batch)
                if not deliveries:
                    continue
                received[consumer].extend(d.message for d in deliveries)
                storage.ack(deliveries)
                with lock:
                    total[0] += len(deliveries)
                    if total[0] >= len(expected):
                        done.set()

        def guarded(target: Callable[[int], None], number: int) -> None:
            try:
                target(number)
            except BaseException as error:
                errors.append(error)
                done.set()

        threads = [threading.Thread(target=guarded, args=(role, n), daemon=True,
                                    name=f"rocketman-kit-{role.__name__}-{n}")
                   for role in (consume, produce) for n in range(4)]
        for thread in threads:
            thread.start()
        finished = done.wait(self.concurrency_timeout)
        done.set()
        for thread in threads:
            thread.join(self.settle_timeout)
        assert not errors, f"a producer or consumer thread raised: {errors[0]!r}"
        assert finished, f"only {total[0]} of {len(expected)} messages delivered in time"
        counts = Counter(m for messages in received for m in messages)
        duplicated = [m for m, seen in counts.items() if seen > 1]
        assert not duplicated, f"{len(duplicated)} messages delivered twice, e.g. {duplicated[0]!r}"
        assert set(counts) == expected, f"{len(expected - set(counts))} messages lost"
        self._assert_stats(storage)
