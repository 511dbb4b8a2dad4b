"""The routing half of the storage kit: subscriptions, parked events, fairness, two runtimes.

Part of :class:`rocketman_core.testing.StorageContract`, which a storage
subclasses; see that class for the fixtures.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from .._backends import Durable, storage_features
from .._contracts import STATS_KEYS, SUBSCRIPTION_COUNT_KEYS, Storage, Subscription
from ._deadlines import wait_until

__all__ = ["RoutingContract", "StorageKit"]


class ReserveInThread:
    """A ``reserve`` blocked in another thread; when it returned (``returned_at``, ``done``)."""

    def __init__(self, storage: Storage, timeout: float, max_count: int = 1,
                 subscriptions: tuple[str, ...] = ("kit",)) -> None:
        self.result: list[Any] | None = None
        self.error: BaseException | None = None
        self.returned_at: float | None = None
        #: Set once the reserve returned (or raised).
        self.done = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(storage, subscriptions, timeout, max_count),
            name="rocketman-kit-reserve", daemon=True,
        )
        self._thread.start()
        self._started.wait(5)

    def _run(self, storage: Storage, subscriptions: tuple[str, ...], timeout: float,
             max_count: int) -> None:
        self._started.set()
        try:
            self.result = list(storage.reserve(subscriptions, timeout, max_count))
        except BaseException as error:  # handed to the test thread by join()
            self.error = error
        finally:
            self.returned_at = time.monotonic()
            self.done.set()

    def join(self, timeout: float) -> list[Any]:
        """The deliveries the reserve returned; fails if it is still blocked after ``timeout``."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"reserve still blocked {timeout}s later"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def end(self, storage: Storage, event: str, timeout: float) -> None:
        """When still blocked (a failed test), end it with a message before the storage closes."""
        if not self.done.is_set():
            storage.push(event, b"unblock")
            self.done.wait(timeout)


class StorageKit:
    """The helpers the storage tests share."""

    reserve_timeout: float
    settle_timeout: float

    def _reserve_exactly(self, storage: Storage, count: int, max_count: int = 1,
                         subscriptions: tuple[str, ...] = ("kit",)) -> list[Any]:
        """Reserve until ``count`` deliveries arrived, failing after ``settle_timeout``."""
        deliveries: list[Any] = []
        deadline = time.monotonic() + self.settle_timeout
        while len(deliveries) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"only {len(deliveries)} of {count} pushed messages could be reserved "
                f"from {', '.join(subscriptions)} within {self.settle_timeout}s")
            batch = storage.reserve(subscriptions, min(remaining, 1.0), max_count)
            assert len(batch) <= max_count, f"reserve(max_count={max_count}) took {len(batch)}"
            deliveries.extend(batch)
        assert len(deliveries) == count, f"reserved {len(deliveries)} messages, {count} were queued"
        return deliveries

    def _drain(self, storage: Storage, name: str) -> list[bytes]:
        """Every message queued for ``name`` now, acknowledged, in the order reserved."""
        taken: list[bytes] = []
        while True:
            batch = storage.reserve((name,), self.reserve_timeout, 100)
            if not batch:
                return taken
            taken += [d.message for d in batch]
            assert {d.subscription for d in batch} == {name}, (
                f"reserve(({name!r},)) returned deliveries of {sorted({d.subscription for d in batch})}")
            storage.ack(batch)

    def _assert_stats(self, storage: Storage, **expected: int) -> None:
        counts = dict.fromkeys(STATS_KEYS, 0)
        counts.update(expected)
        assert storage.stats() == counts

    def _stats_become(self, storage: Storage, failure: str, **expected: int) -> None:
        counts = dict.fromkeys(STATS_KEYS, 0)
        counts.update(expected)
        wait_until(lambda: storage.stats() == counts, self.settle_timeout,
                   f"{failure}: stats() stayed {storage.stats()}, expected {counts}")

    @staticmethod
    def _optional(storage: Storage, member: str) -> Any:
        """The storage's optional ``member`` (as the core reads it), or skip: the member is absent."""
        found = getattr(storage_features(storage), member)
        if found is None:
            pytest.skip(f"the storage has no {member}(): the optional member is absent")
        return found

    def _unrouted(self, storage: Storage, count: int) -> dict[str, int]:
        """What ``count`` events nobody subscribed to add to stats: parked or dropped."""
        return {"parked": count} if _durable(storage) else {"dropped": count}



def _durable(storage: Storage) -> bool:
    return isinstance(storage, Durable) and storage.durable is True


class RoutingContract(StorageKit):
    """Tests of subscriptions and routing."""

    def test_an_event_reaches_every_matching_subscription_and_no_other(
        self, storage: Storage
    ) -> None:
        """Each matching subscription gets its own copy, in order; exact names, patterns, several patterns."""
        storage.subscribe([
            Subscription("billing", ("invoice.paid",)),
            Subscription("audit", ("invoice.*", "user.*")),
            Subscription("mailer", ("user.signed_up",)),
        ], "kit-host")
        storage.push("invoice.paid", b"1 invoice.paid")
        storage.push("user.signed_up", b"2 user.signed_up")
        storage.push_many([("invoice.voided", b"3 invoice.voided"), ("other.thing", b"4 other"),
                           ("user.signed_up", b"5 user.signed_up")])
        self._assert_stats(storage, queued=7, **self._unrouted(storage, 1))
        assert self._drain(storage, "billing") == [b"1 invoice.paid"]
        assert self._drain(storage, "audit") == [
            b"1 invoice.paid", b"2 user.signed_up", b"3 invoice.voided", b"5 user.signed_up"]
        assert self._drain(storage, "mailer") == [b"2 user.signed_up", b"5 user.signed_up"]
        self._assert_stats(storage, **self._unrouted(storage, 1))

    def test_reserve_takes_only_from_the_subscriptions_it_names(self, storage: Storage) -> None:
        """A process never reserves a delivery of a subscription it does not host."""
        storage.subscribe([Subscription("mine", ("a",)), Subscription("theirs", ("a",))], "kit-host")
        storage.push("a", b"for both")
        taken = self._reserve_exactly(storage, 1, subscriptions=("mine",))
        assert [d.subscription for d in taken] == ["mine"]
        assert storage.reserve(("mine",), self.reserve_timeout) == [], "mine got a second copy"
        assert storage.reserve(("nobody",), self.reserve_timeout) == [], (
            "a reserve for a subscription that does not exist took something")
        storage.ack(taken)
        self._assert_stats(storage, queued=1)

    def test_parked_events_reach_each_later_matching_subscription(self, storage: Storage) -> None:
        """Events nobody wanted are parked (durable) or dropped (memory); start="now" skips them."""
        durable = _durable(storage)
        storage.push("order.placed", b"placed 1")
        storage.push_many([("order.shipped", b"shipped"), ("order.placed", b"placed 2")])
        self._assert_stats(storage, **self._unrouted(storage, 3))
        [late] = storage.subscribe([Subscription("late", ("order.placed",))], "kit-host")
        assert late.created and late.previous is None
        [later] = storage.subscribe([Subscription("later", ("order.*",))], "kit-host")
        [fresh] = storage.subscribe([Subscription("fresh", ("order.*",), start="now")], "kit-host")
        if durable:
            assert (late.parked, later.parked, fresh.parked) == (2, 3, 0)
            assert self._drain(storage, "late") == [b"placed 1", b"placed 2"]
            assert self._drain(storage, "later") == [b"placed 1", b"shipped", b"placed 2"], (
                "parked events must stay parked for every later subscription, in order")
        else:
            assert (late.parked, later.parked) == (0, 0), "a memory storage parks nothing"
            assert self._drain(storage, "late") == []
        assert self._drain(storage, "fresh") == [], 'start="now" received parked events'
        self._assert_stats(storage, **self._unrouted(storage, 3))

    def test_subscribe_is_idempotent_and_the_newest_patterns_win(self, storage: Storage) -> None:
        """Registering again changes nothing; other patterns replace the old ones, backlog kept."""
        [first] = storage.subscribe([Subscription("s", ("a",))], "kit-host")
        assert (first.name, first.created, first.previous) == ("s", True, None)
        [again] = storage.subscribe([Subscription("s", ("a",))], "other-host")
        assert (again.created, again.previous) == (False, None)
        storage.push("a", b"before the change")
        [changed] = storage.subscribe([Subscription("s", ("b", "c.*"))], "kit-host")
        assert (changed.created, changed.previous) == (False, ("a",))
        storage.push("a", b"old pattern")
        storage.push("c.d", b"new pattern")
        assert self._drain(storage, "s") == [b"before the change", b"new pattern"]
        [info] = [i for i in storage.subscriptions() if i.name == "s"]
        assert tuple(info.patterns) == ("b", "c.*")

    def test_a_subscription_without_a_host_keeps_its_backlog_until_one_comes(
        self, storage: Storage, other_storage: Storage
    ) -> None:
        """Registered once, a subscription keeps receiving while no process hosts it."""
        storage.subscribe([Subscription("mailer", ("user.*",))], "mailer-1")
        # The mailer goes away (a deploy); another process goes on emitting.
        for n in range(30):
            other_storage.push("user.signed_up", f"user {n}".encode())
        other_storage.push_many([("user.left", b"left")])
        [info] = [i for i in other_storage.subscriptions() if i.name == "mailer"]
        assert info.counts["queued"] == 31, info
        # A new mailer process comes back.
        other_storage.subscribe([Subscription("mailer", ("user.*",))], "mailer-2")
        assert self._drain(other_storage, "mailer") == [
            *(f"user {n}".encode() for n in range(30)), b"left"]

    def test_handles_of_one_storage_compete_for_a_subscription(
        self, storage: Storage, other_storage: Storage
    ) -> None:
        """Two processes hosting the same subscription share its deliveries: each message once."""
        storage.subscribe([Subscription("shared", ("job",))], "one")
        other_storage.subscribe([Subscription("shared", ("job",))], "two")
        expected = {f"job {n}".encode() for n in range(200)}
        storage.push_many([("job", m) for m in sorted(expected)])
        received: Counter[bytes] = Counter()
        deadline = time.monotonic() + self.settle_timeout
        while sum(received.values()) < len(expected) and time.monotonic() < deadline:
            for handle in (storage, other_storage):
                batch = handle.reserve(("shared",), self.reserve_timeout, 7)
                received.update(d.message for d in batch)
                handle.ack(batch)
        assert set(received) == expected, f"{len(expected - set(received))} messages never came"
        assert max(received.values()) == 1, "a message was delivered to both handles"

    def test_a_busy_subscription_does_not_starve_another(self, storage: Storage) -> None:
        """A worker hosting several subscriptions takes from each, however long one's backlog is."""
        storage.subscribe([Subscription("busy", ("busy",)), Subscription("quiet", ("quiet",))],
                          "kit-host")
        storage.push_many([("busy", f"busy {n}".encode()) for n in range(300)])
        storage.push_many([("quiet", f"quiet {n}".encode()) for n in range(3)])
        seen: list[str] = []
        for _ in range(3):
            batch = storage.reserve(("busy", "quiet"), self.settle_timeout, 8)
            seen += [d.subscription for d in batch]
            storage.ack(batch)
        assert seen.count("quiet") == 3, (
            f"3 reserves of 8 from a busy subscription (300 queued) and a quiet one (3) took "
            f"{seen.count('quiet')} of the quiet one's: the busy one starves it")

    def test_retries_and_dead_letters_stay_with_their_subscription(self, storage: Storage) -> None:
        """A retry, a dead letter and its replay concern one subscription; its siblings see nothing."""
        storage.subscribe([Subscription("flaky", ("e",)), Subscription("sibling", ("e",))], "h")
        storage.push("e", b"event")
        [flaky] = self._reserve_exactly(storage, 1, subscriptions=("flaky",))
        [sibling] = self._reserve_exactly(storage, 1, subscriptions=("sibling",))
        storage.ack([sibling])
        storage.retry_later(flaky, b"event, attempt 1", 0)
        [retried] = self._reserve_exactly(storage, 1, subscriptions=("flaky",))
        assert retried.message == b"event, attempt 1"
        assert storage.reserve(("sibling",), self.reserve_timeout) == [], "the sibling ran again"
        storage.dead_letter(retried, b"event, dead", "gave up")
        assert [x.message for x in storage.dead_letters(subscription="flaky")] == [b"event, dead"]
        assert storage.dead_letters(subscription="sibling") == []
        [letter] = storage.dead_letters()
        assert storage.replay_dead_letters({letter.id: ("flaky", b"event, replayed")}) == 1
        assert self._drain(storage, "flaky") == [b"event, replayed"]
        assert self._drain(storage, "sibling") == []
        counts = {i.name: dict(i.counts) for i in storage.subscriptions()}
        assert counts == {name: dict.fromkeys(SUBSCRIPTION_COUNT_KEYS, 0) for name in ("flaky", "sibling")}

    def test_unsubscribe_removes_the_subscription_with_its_backlog(self, storage: Storage) -> None:
        """After unsubscribe, nothing is routed to it, nothing of it is counted or listed."""
        storage.subscribe([Subscription("gone", ("e",)), Subscription("kept", ("e",))], "h")
        storage.push_many([("e", b"one"), ("e", b"two"), ("e", b"three")])
        [held] = self._reserve_exactly(storage, 1, subscriptions=("gone",))
        storage.dead_letter(held, b"one", "failed")
        self._assert_stats(storage, queued=5, dead=1)
        assert storage.unsubscribe("gone") is True
        assert storage.unsubscribe("gone") is False
        self._assert_stats(storage, queued=3)
        assert storage.dead_letters() == []
        storage.push("e", b"four")
        assert [i.name for i in storage.subscriptions()] == ["kept"]
        assert storage.reserve(("gone",), self.reserve_timeout) == []
        assert self._drain(storage, "kept") == [b"one", b"two", b"three", b"four"]

    def test_subscriptions_lists_patterns_backlog_and_hosts(self, storage: Storage) -> None:
        """``subscriptions()``, ``keep_alive`` and ``leave``: who hosts what, since when, with what backlog."""
        before = time.time()
        storage.subscribe([Subscription("b.sub", ("x.*", "y")), Subscription("a.sub", ("x.*",))],
                          "host-1")
        assert storage.keep_alive("host-2", ["a.sub", "no.such"]) == ["no.such"]
        storage.push("x.1", b"x")
        infos = {i.name: i for i in storage.subscriptions()}
        assert list(infos) == ["a.sub", "b.sub"], "subscriptions() must list them by name"
        a, b = infos["a.sub"], infos["b.sub"]
        assert tuple(b.patterns) == ("x.*", "y")
        assert dict(a.counts) == {"queued": 1, "reserved": 0, "delayed": 0, "dead": 0}
        assert set(a.hosts) == {"host-1", "host-2"} and set(b.hosts) == {"host-1"}
        tolerance = 2.0
        assert all(before - tolerance <= seen <= time.time() + tolerance for seen in a.hosts.values())
        assert before - tolerance <= a.created_at <= time.time() + tolerance
        assert a.last_seen == max(a.hosts.values())
        # host-1 stops cleanly: no longer a host of a.sub, which stays, last seen now.
        storage.leave("host-1", ["a.sub"])
        infos = {i.name: i for i in storage.subscriptions()}
        assert set(infos["a.sub"].hosts) == {"host-2"} and set(infos["b.sub"].hosts) == {"host-1"}
        last_seen = infos["a.sub"].last_seen
        assert last_seen is not None and last_seen >= a.last_seen - 0.001
        assert infos["a.sub"].counts["queued"] == 1, "leaving dropped the backlog"

    def test_two_runtimes_share_one_storage_with_disjoint_and_overlapping_consumers(
        self, storage: Storage, other_storage: Storage
    ) -> None:
        """Billing in one runtime, mailer in the other, analytics in both: each gets each event once."""
        from .._runtime import Rocketman

        lock = threading.Lock()
        got: dict[str, Counter[str]] = {"billing": Counter(), "mailer": Counter(),
                                        "analytics": Counter()}

        def recorder(name: str) -> Any:
            def record(payload: Any, event: Any) -> None:
                with lock:
                    got[name][event.id] += 1
            return record

        billing_app, mailer_app = Rocketman(), Rocketman()
        billing_app.on_event("invoice.*", name="billing")(recorder("billing"))
        billing_app.on_event("*", name="analytics")(recorder("analytics"))
        mailer_app.on_event("user.*", name="mailer")(recorder("mailer"))
        mailer_app.on_event("*", name="analytics")(recorder("analytics"))
        apps = (billing_app, mailer_app)
        for app, handle in zip(apps, (storage, other_storage), strict=True):
            app.configure(storage=handle, worker_count=2, latency=0.2)
            app.start()
        try:
            invoices = [billing_app.emit("invoice.paid", {"n": n}) for n in range(40)]
            users = mailer_app.emit_many(("user.signed_up", {"n": n}) for n in range(40))
            every = set(invoices) | set(users)

            def done() -> bool:
                with lock:
                    return (set(got["billing"]) == set(invoices) and set(got["mailer"]) == set(users)
                            and set(got["analytics"]) == every)

            wait_until(done, self.settle_timeout, f"not every consumer got its events: "
                       f"{ {name: len(ids) for name, ids in got.items()} }")
            assert billing_app.drain(self.settle_timeout), "events left in the storage"
        finally:
            for app in apps:
                app.shutdown(timeout=5)
        for name, counts in got.items():
            assert max(counts.values()) == 1, f"{name} handled an event twice"
