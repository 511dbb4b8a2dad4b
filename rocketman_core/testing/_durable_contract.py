"""The durable storage kit: what a storage that outlives processes promises, as tests.

Opt-in, beside :class:`~rocketman_core.testing.StorageContract`, for a storage
with ``durable = True``: leases that expire on time and only then, renewals,
release, interrupt, retries due on the storage's clock, and a real process
killed with SIGKILL while it holds messages. A storage runs it by
subclassing :class:`DurableStorageContract` and providing ONE fixture,
``durable_storage_spec``, which says how to build the storage::

    class TestMyDurableStorage(DurableStorageContract):
        @pytest.fixture
        def durable_storage_spec(self) -> Iterator[DurableStorageSpec]:
            namespace = fresh_namespace()            # EMPTY for every test
            yield DurableStorageSpec("my_storage:MyStorage",
                                     {"url": URL, "namespace": namespace, "lease": 0.5},
                                     lease=0.5)
            delete_everything_in(namespace)          # the kit closed what it built

The kit builds every handle it needs from the spec: ``storage`` and
``other_storage`` (two handles on the same data, as two processes have) in
the test's process, and one more in a fresh interpreter that it spawns
(``sys.executable``, with this process's ``sys.path``). So ``factory`` must be
importable there and ``options`` must be JSON. The kit waits for leases to
expire several times: with a lease of 0.5 s it runs in a few seconds.

What the kit needs of the storage beyond :class:`~rocketman_core.Storage`:
``durable = True``; leases of ``spec.lease`` seconds, extended by ``renew``,
which the kit calls every ``renew_interval`` (when the storage has one, else
a third of the lease) as the core does; ``release`` and ``interrupt`` (their
tests skip when absent). A slow server can relax the class attributes.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from .._backends import storage_features
from .._contracts import STATS_KEYS, Delivery, Storage, Subscription
from ._deadlines import wait_until
from ._routing_contract import ReserveInThread, StorageKit

__all__ = ["DurableStorageContract", "DurableStorageSpec"]

KIT = ("kit",)
EVENT = "kit.event"
HOST = "durable-kit"
# What the spawned interpreter runs: _child_main below, on the JSON in argv[1].
_CHILD = "from rocketman_core.testing._durable_contract import _child_main; _child_main()"


@dataclass(frozen=True)
class DurableStorageSpec:
    """How to build the storage under test, in the test's process or in a fresh one.

    :param factory: ``"module:callable"`` (the callable may be dotted,
        ``"module:Class.create"``); a fresh interpreter with the test's
        ``sys.path`` must be able to import it.
    :param options: the keyword arguments of ``factory``, JSON-serialisable;
        every storage built from them shares the same data (same server,
        same namespace), empty when the test starts.
    :param lease: seconds a reserved message stays its holder's without a
        renewal, in the storages ``factory`` builds (keep it short: 0.5).
    """

    factory: str
    options: dict[str, Any]
    lease: float

    def build(self) -> Storage:
        """A new storage handle: ``factory(**options)``."""
        module_name, _, attribute = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in filter(None, attribute.split(".")):
            target = getattr(target, part)
        storage: Storage = target(**self.options)
        return storage


def _child_main() -> None:
    """The spawned process: build the storage from argv's spec, push or hold, and say so on stdout."""
    task = json.loads(sys.argv[1])
    storage = DurableStorageSpec(task["factory"], task["options"], task["lease"]).build()
    if task["action"] == "push":
        for name, message in task["events"]:
            storage.push(name, message.encode())
        storage.close()
        _report("pushed")
        return
    held: list[Any] = []
    deadline = time.monotonic() + task["timeout"]
    while len(held) < task["count"] and time.monotonic() < deadline:
        held += storage.reserve(task["subscriptions"], 0.5, task["count"] - len(held))
    _report([d.message.decode() for d in held])
    # Hold them, neither acknowledged nor renewed, until SIGKILL (or until
    # the test process dies and stdin closes: no orphan outlives the test).
    sys.stdin.read()


def _report(what: Any) -> None:
    """One JSON line on stdout: what the parent waits for."""
    sys.stdout.write(json.dumps(what) + "\n")
    sys.stdout.flush()


class _ChildProcess:
    """A fresh interpreter acting on the storage the spec builds; its stderr kept for failures."""

    def __init__(self, spec: DurableStorageSpec, **task: Any) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept for the life of the child
        payload = json.dumps({"factory": spec.factory, "options": spec.options,
                              "lease": spec.lease, **task})
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen([sys.executable, "-c", _CHILD, payload], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr)

    def report(self, timeout: float) -> Any:
        """The JSON line the child prints once it acted; fails if it died or took over ``timeout``."""
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else b""
        if not line:
            self._stderr.seek(0)
            raise AssertionError(
                f"the child process building the storage from the spec did not report within "
                f"{timeout}s (exit code {self.process.poll()}):\n"
                f"{self._stderr.read().decode(errors='replace')[-3000:]}")
        return json.loads(line)

    def close(self) -> None:
        """SIGKILL when it still runs: no handler, no cleanup, exactly like a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        for stream in (self.process.stdin, self.process.stdout, self._stderr):
            if stream is not None:
                stream.close()


class DurableStorageContract(StorageKit):
    """Tests of the promises of a durable storage; subclass it and provide ``durable_storage_spec``.

    See the module's documentation for the fixture and what the kit needs.
    """

    #: The ``timeout`` of a reserve that is expected to find nothing, in seconds.
    reserve_timeout: float = 0.3
    #: Deadline for things that become true eventually (messages queued, a reserve).
    settle_timeout: float = 10.0
    #: How much later than its lease or due time a message may come back.
    timing_tolerance: float = 0.5
    #: How soon a released delivery, or an interrupted reserve, must come back.
    wake_within: float = 0.5
    #: The delay given to ``retry_later``, in seconds.
    retry_delay: float = 0.5
    #: Time to let another thread enter its blocking ``reserve`` before acting.
    block_settle: float = 0.2
    #: Deadline for a spawned interpreter to start, build the storage and act.
    child_timeout: float = 30.0

    @pytest.fixture
    def durable_storage_spec(self) -> DurableStorageSpec:
        """How to build the storage, on data empty for this test: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `durable_storage_spec` fixture "
                    "returning a DurableStorageSpec on fresh, empty data")

    @pytest.fixture
    def lease(self, durable_storage_spec: DurableStorageSpec) -> float:
        """The lease of the storages the spec builds, in seconds."""
        return durable_storage_spec.lease

    @pytest.fixture
    def durable_storages(self, durable_storage_spec: DurableStorageSpec
                         ) -> Iterator[Callable[[], Storage]]:
        """``build()``: a new handle from the spec; every one is closed after the test."""
        built: list[Storage] = []

        def build() -> Storage:
            built.append(durable_storage_spec.build())
            return built[-1]

        yield build
        for storage in built:
            storage.close()

    @pytest.fixture
    def storage(self, durable_storages: Callable[[], Storage]) -> Storage:
        """A handle built from the spec; it must say it is durable."""
        storage = durable_storages()
        assert storage_features(storage).durable, (
            f"{storage!r} does not declare durable = True: this kit is for durable storages")
        return storage

    @pytest.fixture
    def other_storage(self, durable_storages: Callable[[], Storage]) -> Storage:
        """A second handle on the same data, as another process has it."""
        return durable_storages()

    @pytest.fixture
    def kit(self, storage: Storage) -> Storage:
        """``storage`` with the subscription ``kit`` on ``kit.*`` registered (and hosted)."""
        storage.subscribe([Subscription("kit", ("kit.*",))], HOST)
        return storage

    def _reserve_within(self, storage: Storage, seconds: float
                        ) -> tuple[Sequence[Delivery], float]:
        """The first deliveries of ``kit`` reserved within ``seconds`` ([] if none), and when."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            deliveries = storage.reserve(KIT, remaining)
            if deliveries:
                return deliveries, time.monotonic()
        return [], time.monotonic()

    # -- leases ------------------------------------------------------------

    def test_an_expired_lease_returns_its_message_within_about_the_lease(
        self, kit: Storage, lease: float
    ) -> None:
        """A delivery neither acknowledged nor renewed is handed out again after about ``lease``.

        Not before (its holder may still be working on it), not much later,
        even to a worker that was already waiting: two idle workers of a
        process block in ``reserve``; one takes the message and stalls, the
        other must get it back about ``lease`` later, not at its timeout.
        """
        waiters = [ReserveInThread(kit, self.settle_timeout) for _ in range(2)]
        try:
            time.sleep(self.block_settle)  # both inside their blocking reserve
            assert not any(w.done.is_set() for w in waiters), "reserve returned with nothing queued"
            kit.push(EVENT, b"stalled")
            wait_until(lambda: any(w.done.is_set() for w in waiters), self.settle_timeout,
                       "neither waiting reserve got the pushed message")
            holder, waiter = sorted(waiters, key=lambda w: w.returned_at or float("inf"))
            assert holder.result is not None and [d.message for d in holder.result] == [b"stalled"]
            waiter.done.wait(lease + self.timing_tolerance)
            waited = min(waiter.returned_at or float("inf"), time.monotonic()) - (holder.returned_at or 0.0)
            assert waiter.result is not None and [d.message for d in waiter.result] == [b"stalled"], (
                f"a {lease}s lease expired, and the worker waiting meanwhile did not get its "
                f"message back within {waited:.2f}s")
            assert waited >= lease * 0.9, f"a {lease}s lease was broken after {waited:.2f}s"
        finally:
            for blocked in waiters:
                blocked.end(kit, EVENT, self.settle_timeout)
        kit.ack(waiter.result)
        self._assert_stats(kit)

    def test_a_late_ack_of_an_expired_lease_changes_nothing(
        self, kit: Storage, other_storage: Storage, lease: float
    ) -> None:
        """Once an expired lease's message went to another worker, the old holder is too late.

        Its ack, retry or dead letter must not remove the new reservation nor
        the message, nor add anything; the new holder acknowledges as usual.
        """
        kit.push(EVENT, b"handed out twice")
        [old] = self._reserve_exactly(kit, 1)
        new, _ = self._reserve_within(other_storage, lease + self.timing_tolerance)
        assert [d.message for d in new] == [b"handed out twice"], (
            "the message of an expired lease was not handed out again")
        kit.ack([old])
        kit.retry_later(old, b"late retry", 0)
        kit.dead_letter(old, b"late dead letter", "too late")
        stats = other_storage.stats()
        assert stats == {**dict.fromkeys(STATS_KEYS, 0), "reserved": 1}, (
            f"the old holder's late ack, retry and dead letter changed the counts: {stats}")
        assert other_storage.dead_letters() == [], "a late dead letter was kept"
        other_storage.ack(new)
        self._assert_stats(other_storage)
        assert other_storage.reserve(KIT, self.reserve_timeout) == [], (
            "the message came back after its new holder acknowledged it")

    def test_renew_keeps_a_lease_alive_past_its_first_deadline(
        self, kit: Storage, other_storage: Storage, lease: float
    ) -> None:
        """Renewed every ``renew_interval``, a delivery stays its holder's for more than 2 leases."""
        interval = storage_features(kit).renew_interval or lease / 3
        assert 0 < interval < lease, f"renewing every {interval}s cannot keep a {lease}s lease"
        kit.push(EVENT, b"long job")
        [held] = self._reserve_exactly(kit, 1)
        reserved_at = time.monotonic()
        until = reserved_at + 2.5 * lease
        while (remaining := until - time.monotonic()) > 0:
            kit.renew([held])
            # The interval passes inside another worker's reserve, which must find nothing.
            stolen = other_storage.reserve(KIT, min(interval, remaining))
            assert stolen == [], (
                f"renewed every {interval:.2f}s, a delivery with a {lease}s lease was handed out "
                f"again {time.monotonic() - reserved_at:.2f}s after it was reserved")
        self._assert_stats(kit, reserved=1)
        kit.ack([held])
        self._assert_stats(kit)

    # -- release and interrupt ---------------------------------------------

    def test_release_requeues_at_once_and_in_order(self, kit: Storage) -> None:
        """Released deliveries are the next reserve's, at once, in their order, before later ones."""
        release = self._optional(kit, "release")
        self._push(kit, b"first", b"second", b"third", b"later")
        self._stats_become(kit, "the pushed messages were not queued", queued=4)
        held = self._reserve_exactly(kit, 3)
        assert [d.message for d in held] == [b"first", b"second", b"third"]
        release(held[1:])
        self._assert_stats(kit, queued=3, reserved=1)
        started = time.monotonic()
        again = self._reserve_exactly(kit, 3)
        took = time.monotonic() - started
        assert [d.message for d in again] == [b"second", b"third", b"later"], (
            "released deliveries must come back first, in their order")
        assert took < self.wake_within, (
            f"released deliveries came back after {took:.2f}s: release must queue them at once")
        kit.ack([held[0], *again])
        self._assert_stats(kit)

    def test_ack_and_reserve_acknowledges_before_it_takes_or_blocks(self, kit: Storage) -> None:
        """``ack_and_reserve(done, ...)``: ``done`` is acknowledged, the next batch is taken; with nothing left, it returns ``[]``."""
        piggyback = self._optional(kit, "ack_and_reserve")
        self._push(kit, b"first", b"second", b"third", b"fourth")
        self._stats_become(kit, "the pushed messages were not queued", queued=4)
        held = self._reserve_exactly(kit, 2)
        following = piggyback(held, KIT, self.settle_timeout, 2)
        while len(following) < 2:  # a storage may hand out fewer than asked
            following += kit.reserve(KIT, self.settle_timeout, 2 - len(following))
        assert sorted(d.message for d in following) == [b"fourth", b"third"]
        self._assert_stats(kit, reserved=2)
        started = time.monotonic()
        assert piggyback(following, KIT, 0.2, 2) == [], "nothing was left to reserve"
        assert time.monotonic() - started < 0.2 + self.wake_within
        self._assert_stats(kit)
        kit.ack([*held, *following])  # again: changes nothing
        self._assert_stats(kit)

    def test_interrupt_wakes_a_blocked_reserve(self, kit: Storage) -> None:
        """A reserve blocked with a long timeout returns ``[]`` promptly after ``interrupt()``."""
        interrupt = self._optional(kit, "interrupt")
        reserving = ReserveInThread(kit, self.settle_timeout)
        try:
            # Nothing says from outside that a thread is inside a blocking call.
            time.sleep(self.block_settle)
            assert not reserving.done.is_set(), "reserve returned before anything happened"
            interrupt()
            assert reserving.done.wait(self.wake_within), (
                f"a reserve blocked for {self.settle_timeout}s was still blocked "
                f"{self.wake_within}s after interrupt()")
        finally:
            reserving.end(kit, EVENT, self.settle_timeout)
        assert reserving.error is None, f"the interrupted reserve raised {reserving.error!r}"
        assert reserving.result == [], f"the interrupted reserve returned {reserving.result}"
        kit.push(EVENT, b"after the interrupt")
        assert [d.message for d in self._reserve_exactly(kit, 1)] == [b"after the interrupt"], (
            "reserve did not work again after interrupt()")

    # -- processes ---------------------------------------------------------

    def test_a_process_killed_while_holding_messages_loses_none(
        self, kit: Storage, durable_storage_spec: DurableStorageSpec, lease: float
    ) -> None:
        """A real process reserves 5 messages and is SIGKILLed: each comes back once, within ~lease."""
        pushed = Counter(f"held {n}".encode() for n in range(5))
        self._push(kit, *pushed)
        self._stats_become(kit, "the pushed messages were not queued", queued=5)
        child = _ChildProcess(durable_storage_spec, action="hold", subscriptions=list(KIT),
                              count=5, timeout=self.child_timeout)
        try:
            held = child.report(self.child_timeout)
            assert Counter(m.encode() for m in held) == pushed, f"the child process held {held}"
            self._assert_stats(kit, reserved=5)
        finally:
            child.close()
        deadline = time.monotonic() + lease + self.timing_tolerance
        back: list[Delivery] = []
        while len(back) < 5 and (remaining := deadline - time.monotonic()) > 0:
            back += kit.reserve(KIT, remaining, 5)
        assert Counter(d.message for d in back) == pushed, (
            f"within {lease + self.timing_tolerance}s of the SIGKILL of their holder ({lease}s "
            f"lease), these came back: {sorted(d.message for d in back)}")
        kit.ack(back)
        assert kit.reserve(KIT, self.reserve_timeout) == [], (
            "a message held by the killed process was delivered twice")
        self._assert_stats(kit)

    def test_retries_fall_due_on_time(self, kit: Storage, other_storage: Storage) -> None:
        """A retry is not delivered before its delay, and is within a small tolerance after.

        Scheduled by one handle, taken by another (another process's worker):
        the due time is the storage's, not the scheduling process's.
        """
        delay = self.retry_delay
        kit.push(EVENT, b"attempt 1")
        [delivery] = self._reserve_exactly(kit, 1)
        kit.retry_later(delivery, b"attempt 2", delay)
        scheduled = time.monotonic()
        due, returned_at = self._reserve_within(other_storage, delay + self.timing_tolerance)
        waited = returned_at - scheduled
        assert [d.message for d in due] == [b"attempt 2"], (
            f"a retry delayed {delay}s was not delivered within {waited:.2f}s")
        assert waited >= delay * 0.9, f"a retry delayed {delay}s was delivered after {waited:.2f}s"
        other_storage.ack(due)
        self._assert_stats(other_storage)

    def test_a_subscription_is_routed_to_when_another_process_pushes(
        self, kit: Storage, durable_storage_spec: DurableStorageSpec
    ) -> None:
        """Events a real other process pushes reach the subscription this one registered, in order."""
        child = _ChildProcess(durable_storage_spec, action="push", events=[
            ("kit.one", "one"), ("nobody.wants.it", "parked"), ("kit.two", "two")])
        try:
            assert child.report(self.child_timeout) == "pushed"
            assert child.process.wait(self.child_timeout) == 0, "the pushing process failed"
        finally:
            child.close()
        got = self._reserve_exactly(kit, 2)
        assert [d.message for d in got] == [b"one", b"two"]
        kit.ack(got)
        self._stats_become(kit, "the event nobody subscribed to was not parked", parked=1)

    def _push(self, storage: Storage, *messages: bytes) -> None:
        for message in messages:
            storage.push(EVENT, message)
