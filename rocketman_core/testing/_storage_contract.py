"""The storage conformance kit: every promise of :class:`rocketman_core.Storage`, as tests.

A storage runs it by subclassing :class:`StorageContract` in one of its test
modules and providing a ``storage`` fixture (and, for a storage shared by
processes, ``other_storage``)::

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self) -> Iterator[Storage]:
            s = MyStorage(...)   # fresh and EMPTY for every test
            yield s
            s.close()

        @pytest.fixture
        def other_storage(self, storage) -> Iterator[Storage]:
            s = MyStorage(...)   # a second handle on the SAME data, as another process has
            yield s
            s.close()

The tests of one queue's behaviour use one subscription, ``kit`` on the
pattern ``kit.*``; the routing tests (:mod:`._routing_contract`) use several.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .._contracts import STATS_KEYS, STORAGE_CONTRACT, Storage, Subscription
from ._routing_contract import ReserveInThread, RoutingContract, StorageKit

__all__ = ["StorageContract"]

#: Bytes a storage must carry untouched: NUL, bytes that are not UTF-8, a large blob.
AWKWARD_MESSAGES = (
    b'{"name": "plain"}',
    b"\x00\x01\x02 nul and control bytes",
    b"\xff\xfe\x80\xc3\x28 not UTF-8 \xed\xa0\x80",
    "caf\u00e9 \u2603 \U0001f680".encode(),
    bytes(range(256)) * 400,
)

KIT = ("kit",)
EVENT = "kit.event"


class StorageContract(RoutingContract, StorageKit):
    """Tests of the :class:`rocketman_core.Storage` promises; subclass it and provide ``storage``.

    The ``storage`` fixture yields a fresh, empty storage and closes it
    afterwards; ``other_storage`` (default: the same object) a second handle
    on the same data, as another process would open it. Storages behind a
    slow server can relax the timing with the class attributes below.
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

    @pytest.fixture
    def other_storage(self, storage: Storage) -> Storage:
        """A second handle on the same data as ``storage``; override for a shared storage."""
        return storage

    @pytest.fixture
    def kit(self, storage: Storage) -> Storage:
        """``storage`` with the subscription ``kit`` on ``kit.*`` registered."""
        storage.subscribe([Subscription("kit", ("kit.*",))], "kit-host")
        return storage

    # -- helpers ---------------------------------------------------------

    def _push(self, storage: Storage, *messages: bytes) -> None:
        for message in messages:
            storage.push(EVENT, message)

    def _let_block(self, reserving: ReserveInThread) -> None:
        # Nothing says from outside that a thread is inside a blocking call:
        # give it a moment to get there, so the test measures a wake-up and
        # not a reserve that found the message already queued.
        time.sleep(self.block_settle)
        assert reserving.returned_at is None, "reserve returned before anything was queued"

    @staticmethod
    def _optional_async(storage: Storage, member: str) -> Any:
        """The storage's optional ``async def`` ``member``, or skip: the member is absent.

        The core awaits it in the caller's event loop, so a plain function
        that returns no awaitable is a broken storage, not an absent member.
        """
        found = getattr(storage, member, None)
        if found is None:
            pytest.skip(f"the storage has no {member}(): the optional member is absent")
        assert inspect.iscoroutinefunction(found), (
            f"{member} must be an `async def` method: the core awaits it in the event loop")
        return found

    def _one_dead_letter(self, storage: Storage, message: bytes, reason: str) -> None:
        storage.push(EVENT, b"to be replaced")
        [delivery] = self._reserve_exactly(storage, 1)
        storage.dead_letter(delivery, message, reason)

    # -- the contract's version ------------------------------------------

    def test_declares_the_contract_version(self, storage: Storage) -> None:
        """``contract_version`` says which contract the storage implements: this core's."""
        assert getattr(storage, "contract_version", None) == STORAGE_CONTRACT, (
            f"the storage must declare contract_version = {STORAGE_CONTRACT}")

    # -- push and reserve ------------------------------------------------

    def test_reserve_returns_the_exact_bytes_pushed(self, kit: Storage) -> None:
        """A message comes back byte for byte: NUL, non-UTF-8 bytes and 100 KB included."""
        self._push(kit, *AWKWARD_MESSAGES)
        deliveries = self._reserve_exactly(kit, len(AWKWARD_MESSAGES))
        assert [d.message for d in deliveries] == list(AWKWARD_MESSAGES)
        assert all(type(d.message) is bytes for d in deliveries), "Delivery.message must be bytes"
        assert {d.subscription for d in deliveries} == {"kit"}, "Delivery.subscription must name it"

    def test_one_consumer_receives_messages_in_push_order(self, kit: Storage) -> None:
        """With one consumer, messages are delivered in the order they were pushed (FIFO)."""
        pushed = [f"message {n}".encode() for n in range(20)]
        self._push(kit, *pushed)
        received = [d.message for d in self._reserve_exactly(kit, len(pushed))]
        assert received == pushed

    def test_reserve_takes_several_ready_messages_up_to_max_count(self, kit: Storage) -> None:
        """``max_count`` is never exceeded, and more than one is taken when several are ready."""
        pushed = [f"batch {n}".encode() for n in range(10)]
        self._push(kit, *pushed)
        first = kit.reserve(KIT, self.settle_timeout, 4)
        assert 2 <= len(first) <= 4, (
            f"reserve(max_count=4) with 10 ready messages took {len(first)}: "
            "it must take more than one when they are ready at once, and never more than 4")
        rest = self._reserve_exactly(kit, len(pushed) - len(first), max_count=4)
        assert [d.message for d in [*first, *rest]] == pushed
        kit.ack([*first, *rest])
        self._assert_stats(kit)

    def test_reserve_on_an_empty_storage_returns_nothing_after_about_timeout(
        self, kit: Storage
    ) -> None:
        """An empty storage blocks for about ``timeout`` (not much less, not much more), then []."""
        timeout = self.reserve_timeout
        started = time.monotonic()
        result = kit.reserve(KIT, timeout, 5)
        elapsed = time.monotonic() - started
        assert result == []
        assert elapsed >= timeout * 0.9, f"reserve({timeout}) gave up after {elapsed:.3f}s"
        assert elapsed <= timeout + self.timing_tolerance, (
            f"reserve({timeout}) returned only after {elapsed:.3f}s")

    def test_a_blocked_reserve_wakes_promptly_when_a_message_is_pushed(self, kit: Storage) -> None:
        """A reserve waiting with a long timeout returns the message as soon as it is pushed."""
        reserving = ReserveInThread(kit, timeout=self.settle_timeout)
        self._let_block(reserving)
        pushed_at = time.monotonic()
        kit.push(EVENT, b"wake up")
        deliveries = reserving.join(self.settle_timeout)
        assert [d.message for d in deliveries] == [b"wake up"]
        assert reserving.returned_at is not None
        latency = reserving.returned_at - pushed_at
        assert latency < self.wake_within, (
            f"the blocked reserve returned {latency:.3f}s after the push: it polls "
            "instead of waking up")

    def test_push_many_queues_in_order(self, kit: Storage) -> None:
        """``push_many`` queues every message, in order; an empty list queues nothing."""
        kit.push(EVENT, b"before")
        kit.push_many([])
        kit.push_many([(EVENT, f"many {n}".encode()) for n in range(50)] + [(EVENT, b"\xff\x00")])
        kit.push(EVENT, b"after")
        expected = [b"before", *(f"many {n}".encode() for n in range(50)), b"\xff\x00", b"after"]
        self._assert_stats(kit, queued=len(expected))
        received = [d.message for d in self._reserve_exactly(kit, len(expected), 10)]
        assert received == expected

    # -- pushing from a coroutine (optional) -----------------------------

    def test_push_async_stores_events_as_push_does(self, kit: Storage) -> None:
        """``await push_async`` (optional) queues the exact bytes in push order, from any event loop."""
        push_async = self._optional_async(kit, "push_async")

        async def push(*messages: bytes) -> None:
            for message in messages:
                assert await push_async(EVENT, message) is None

        kit.push(EVENT, b"before")
        asyncio.run(push(*AWKWARD_MESSAGES))
        asyncio.run(push(b"from a second event loop"))  # an application may run several, in turn
        kit.push(EVENT, b"after")
        expected = [b"before", *AWKWARD_MESSAGES, b"from a second event loop", b"after"]
        self._assert_stats(kit, queued=len(expected))
        received = [d.message for d in self._reserve_exactly(kit, len(expected), 10)]
        assert received == expected

    def test_push_many_async_queues_in_order(self, kit: Storage) -> None:
        """``await push_many_async`` (optional) queues every event in order; an empty list queues nothing."""
        push_many_async = self._optional_async(kit, "push_many_async")
        events = [(EVENT, f"many {n}".encode()) for n in range(50)] + [(EVENT, b"\xff\x00")]

        async def push() -> None:
            await push_many_async([])
            await push_many_async(events)
            await push_many_async([("unsubscribed.event", b"nobody's")])

        kit.push(EVENT, b"before")
        asyncio.run(push())
        kit.push(EVENT, b"after")
        expected = [b"before", *(message for _, message in events), b"after"]
        self._assert_stats(kit, queued=len(expected), **self._unrouted(kit, 1))
        received = [d.message for d in self._reserve_exactly(kit, len(expected), 10)]
        assert received == expected

    # -- acknowledging ---------------------------------------------------

    def test_ack_removes_deliveries_from_reserved(self, kit: Storage) -> None:
        """A reserved message counts as ``reserved`` until acknowledged, then is gone."""
        self._push(kit, b"one", b"two", b"three")
        deliveries = self._reserve_exactly(kit, 3)
        self._assert_stats(kit, reserved=3)
        kit.ack(deliveries[:1])
        self._assert_stats(kit, reserved=2)
        kit.ack(deliveries[1:])
        self._assert_stats(kit)
        assert kit.reserve(KIT, self.reserve_timeout) == [], "an acknowledged message came back"

    def test_acknowledging_twice_changes_nothing(self, kit: Storage) -> None:
        """A second ack of the same delivery is not an error and counts nothing twice."""
        self._push(kit, b"acked twice", b"still reserved")
        first, second = self._reserve_exactly(kit, 2)
        kit.ack([first])
        kit.ack([first])
        kit.ack([first, first])
        self._assert_stats(kit, reserved=1)
        kit.ack([second])
        self._assert_stats(kit)

    def test_renew_accepts_reserved_deliveries(self, kit: Storage) -> None:
        """``renew`` takes held deliveries (and an empty list) without error or side effect."""
        self._push(kit, b"held", b"long")
        deliveries = self._reserve_exactly(kit, 2)
        kit.renew(deliveries)
        kit.renew([])
        self._assert_stats(kit, reserved=2)
        kit.ack(deliveries)
        self._assert_stats(kit)

    def test_release_gives_deliveries_back_to_the_front_in_order(self, kit: Storage) -> None:
        """``release`` (optional) puts unhandled deliveries back first in line, in their order."""
        release = self._optional(kit, "release")
        self._push(kit, b"first", b"second", b"third")
        deliveries = self._reserve_exactly(kit, 3, max_count=3)
        release(deliveries[1:])
        self._assert_stats(kit, queued=2, reserved=1)
        again = self._reserve_exactly(kit, 2, max_count=2)
        assert [d.message for d in again] == [b"second", b"third"]
        kit.ack([deliveries[0], *again])
        self._assert_stats(kit)

    # -- retries ---------------------------------------------------------

    def test_retry_later_keeps_a_message_delayed_until_it_is_due(self, kit: Storage) -> None:
        """A retried message is ``delayed`` and not reservable before its delay, queued after."""
        delay = self.retry_delay
        kit.push(EVENT, b"first attempt")
        [delivery] = self._reserve_exactly(kit, 1)
        scheduled = time.monotonic()
        kit.retry_later(delivery, b"\xfe retry me", delay)
        stats = kit.stats()
        early = kit.reserve(KIT, delay / 4)
        # Judge only what happened before the due time: a stalled machine may
        # legitimately get here late.
        if time.monotonic() - scheduled < delay:
            assert stats == {**dict.fromkeys(STATS_KEYS, 0), "delayed": 1}, (
                f"retry_later must replace the delivery (reserved 0) by a delayed message: {stats}")
            assert early == [], "a delayed message was reserved before its due time"
        deliveries = early
        if not deliveries:
            self._stats_become(kit, "a delayed message never became queued", queued=1)
            due_after = time.monotonic() - scheduled
            assert due_after >= delay * 0.9, f"delayed {delay}s, it was queued after {due_after:.3f}s"
            deliveries = self._reserve_exactly(kit, 1)
        assert [d.message for d in deliveries] == [b"\xfe retry me"]
        assert deliveries[0].subscription == "kit", "a retry must come back to its subscription"
        kit.ack(deliveries)
        self._assert_stats(kit)

    def test_retry_later_of_a_delivery_no_longer_held_records_nothing(self, kit: Storage) -> None:
        """Replacing an acknowledged delivery schedules nothing: the outcome is recorded once."""
        kit.push(EVENT, b"done")
        [delivery] = self._reserve_exactly(kit, 1)
        kit.ack([delivery])
        kit.retry_later(delivery, b"late retry", 0)
        kit.dead_letter(delivery, b"late letter", "too late")
        self._assert_stats(kit)
        assert kit.reserve(KIT, self.reserve_timeout) == [], "a retry of an acked delivery came"

    def test_a_blocked_reserve_wakes_when_a_delay_expires(self, kit: Storage) -> None:
        """A reserve blocked with a long timeout returns a retried message when it is due."""
        kit.push(EVENT, b"first")
        [delivery] = self._reserve_exactly(kit, 1)
        reserving = ReserveInThread(kit, timeout=self.settle_timeout)
        self._let_block(reserving)
        delay = self.retry_delay
        scheduled = time.monotonic()
        kit.retry_later(delivery, b"due soon", delay)
        deliveries = reserving.join(self.settle_timeout)
        assert [d.message for d in deliveries] == [b"due soon"]
        assert reserving.returned_at is not None
        waited = reserving.returned_at - scheduled
        assert waited >= delay * 0.9, f"a message delayed {delay}s was reserved after {waited:.3f}s"
        assert waited <= delay + self.timing_tolerance, (
            f"a message delayed {delay}s reached the blocked reserve only after {waited:.3f}s")

    # -- dead letters ----------------------------------------------------

    def test_dead_letters_keep_message_reason_time_and_subscription_oldest_first(
        self, kit: Storage
    ) -> None:
        """Each dead letter has a unique id, the exact bytes, the reason, failed_at, its subscription."""
        before = time.time()
        self._push(kit, b"a", b"b", b"c")
        deliveries = self._reserve_exactly(kit, 3, max_count=3)
        self._assert_stats(kit, reserved=3)
        for delivery, message, reason in zip(deliveries, (b"\xff first", b"second", b"third"), (
                "Traceback: ValueError: \u00e9chec", "second reason", "third reason"), strict=True):
            kit.dead_letter(delivery, message, reason)
        after = time.time()
        letters = kit.dead_letters()
        assert [letter.message for letter in letters] == [b"\xff first", b"second", b"third"]
        assert [letter.reason for letter in letters] == [
            "Traceback: ValueError: \u00e9chec", "second reason", "third reason"]
        assert len({letter.id for letter in letters}) == 3
        assert all(isinstance(letter.id, str) and letter.id for letter in letters)
        assert [letter.subscription for letter in letters] == ["kit"] * 3
        for letter in letters:
            assert before - self.clock_tolerance <= letter.failed_at <= after + self.clock_tolerance
        self._assert_stats(kit, dead=3)

    def test_dead_letters_limit(self, kit: Storage) -> None:
        """``dead_letters(limit=n)`` gives the n oldest."""
        self._push(kit, *(f"letter {n}".encode() for n in range(5)))
        for delivery in self._reserve_exactly(kit, 5, max_count=5):
            kit.dead_letter(delivery, delivery.message, "reason")
        assert [x.message for x in kit.dead_letters(limit=2)] == [b"letter 0", b"letter 1"]
        assert len(kit.dead_letters(limit=10)) == 5
        assert len(kit.dead_letters()) == 5

    def test_a_dead_letter_is_not_delivered(self, kit: Storage) -> None:
        """A dead-lettered message is kept aside: reserve does not hand it out."""
        self._one_dead_letter(kit, b"poison", "malformed")
        assert kit.reserve(KIT, self.reserve_timeout) == []
        self._assert_stats(kit, dead=1)

    def test_replay_dead_letters_queues_the_replacement_in_place(self, kit: Storage) -> None:
        """Replaying queues the replacement, removes the letter, ignores unknown ids, counts."""
        self._one_dead_letter(kit, b"failed a", "a")
        self._one_dead_letter(kit, b"failed b", "b")
        letter_a, letter_b = kit.dead_letters()
        replayed = kit.replay_dead_letters({
            letter_a.id: ("kit", b"replacement \xff a"),
            "no-such-dead-letter": ("kit", b"ignored"),
        })
        assert replayed == 1
        assert [x.id for x in kit.dead_letters()] == [letter_b.id]
        self._assert_stats(kit, queued=1, dead=1)
        deliveries = self._reserve_exactly(kit, 1)
        assert [d.message for d in deliveries] == [b"replacement \xff a"]
        kit.ack(deliveries)
        assert kit.replay_dead_letters({letter_a.id: ("kit", b"again")}) == 0, "replayed twice"
        assert kit.replay_dead_letters({letter_b.id: ("no-such-subscription", b"x")}) == 0, (
            "a dead letter was replayed into a subscription that does not exist")
        assert kit.replay_dead_letters({}) == 0
        self._assert_stats(kit, dead=1)

    def test_purge_dead_letters_by_ids_and_all(self, kit: Storage) -> None:
        """Purging deletes the named dead letters (unknown ids ignored), or all; returns counts."""
        for n in range(4):
            self._one_dead_letter(kit, f"purge {n}".encode(), "reason")
        letters = kit.dead_letters()
        assert kit.purge_dead_letters([letters[1].id, "no-such-dead-letter"]) == 1
        assert [x.id for x in kit.dead_letters()] == [letters[0].id, letters[2].id, letters[3].id]
        assert kit.purge_dead_letters([]) == 0
        assert kit.purge_dead_letters() == 3
        assert kit.dead_letters() == []
        assert kit.purge_dead_letters() == 0
        self._assert_stats(kit)

    # -- stats and lifecycle ---------------------------------------------

    def test_stats_has_exactly_the_stats_keys(self, storage: Storage) -> None:
        """``stats()`` has the keys of STATS_KEYS, integer counts, all zero when empty."""
        stats = storage.stats()
        assert set(stats) == set(STATS_KEYS)
        assert all(type(value) is int for value in stats.values()), stats
        assert stats == dict.fromkeys(STATS_KEYS, 0)

    def test_stats_count_each_place(self, kit: Storage) -> None:
        """Each message counts in exactly one place: queued, reserved, delayed or dead."""
        self._push(kit, b"q1", b"q2", b"q3", b"q4", b"q5")
        self._assert_stats(kit, queued=5)
        first, second, third = self._reserve_exactly(kit, 3, max_count=3)
        self._assert_stats(kit, queued=2, reserved=3)
        kit.retry_later(second, b"later", 3600)
        self._assert_stats(kit, queued=2, reserved=2, delayed=1)
        kit.dead_letter(third, b"dead", "reason")
        self._assert_stats(kit, queued=2, reserved=1, delayed=1, dead=1)
        kit.ack([first])
        self._assert_stats(kit, queued=2, delayed=1, dead=1)

    def test_close_is_idempotent(self, kit: Storage) -> None:
        """Closing twice is not an error (the fixture closes a third time)."""
        kit.push(EVENT, b"left behind")
        kit.close()
        kit.close()

    # -- threads ---------------------------------------------------------

    def test_concurrent_producers_and_consumers_deliver_each_message_once(
        self, kit: Storage
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
                    kit.push_many([(EVENT, m) for m in messages[start:start + 50]])
            else:
                for message in messages:
                    kit.push(EVENT, message)

        def consume(consumer: int) -> None:
            while not done.is_set():
                deliveries = kit.reserve(KIT, self.reserve_timeout, batch)
                if not deliveries:
                    continue
                received[consumer].extend(d.message for d in deliveries)
                kit.ack(deliveries)
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
        self._assert_stats(kit)

