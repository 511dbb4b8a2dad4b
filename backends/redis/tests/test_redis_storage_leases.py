"""Leases, renewals, the server's clock, the hash tag: what only the Redis storage promises."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.crc import key_slot
from rocketman_redis import RedisStorage

from rocketman_core import Rocketman, Subscription

HOST = "test-host"
#: The subscription most tests use: every event.
S = ("s",)
EMPTY = {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 0, "dropped": 0}


def _subscribed(storage: RedisStorage, *subscriptions: Subscription) -> RedisStorage:
    """``storage`` with ``subscriptions`` registered (default: ``s`` on every event)."""
    storage.subscribe(list(subscriptions) or [Subscription("s", ("*",))], HOST)
    return storage


def _reserve_until(storage: RedisStorage, count: int, timeout: float,
                   subscriptions: Sequence[str] = S) -> list[Any]:
    deliveries: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(deliveries) < count and time.monotonic() < deadline:
        deliveries += storage.reserve(subscriptions, max(0.01, min(1.0, deadline - time.monotonic())), 10)
    return deliveries


def _envelope(name: str, event_id: str, **fields: Any) -> bytes:
    """An event as rocketman 0.1 wrote it (the envelope has not changed, only where it goes)."""
    return json.dumps({"id": event_id, "name": name, "emitted_at": 1764384000.25, "attempt": 0,
                       "payload": {"from": "0.1"}, **fields}).encode()


def _server_ms(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


def test_an_expired_lease_gives_the_messages_to_another_worker_within_about_the_lease(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """A worker that reserved and died (no ack, no renew): another gets its messages after ~lease."""
    crashed = _subscribed(redis_storage_factory(lease=1))
    survivor = redis_storage_factory(namespace=crashed.keys.namespace, lease=1)
    crashed.push_many([("job.run", b"first"), ("job.run", b"second")])
    held = crashed.reserve(S, 5, 10)
    reserved_at = time.monotonic()
    assert [d.message for d in held] == [b"first", b"second"]

    taken = _reserve_until(survivor, 2, timeout=10)
    waited = time.monotonic() - reserved_at
    assert [d.message for d in taken] == [b"first", b"second"], "lost, or not in order"
    assert waited >= 0.9, f"the lease of 1s was broken after {waited:.2f}s"
    assert waited <= 1.6, f"a 1s lease expired, and another worker got its messages {waited:.2f}s later"
    crashed.ack(held)  # too late: changes nothing
    assert survivor.stats()["reserved"] == 2
    survivor.ack(taken)
    assert survivor.stats() == EMPTY


def test_messages_left_in_the_0_1_layout_are_routed_into_the_subscriptions_that_want_them(
    redis_storage: RedisStorage, redis_raw: redis.Redis, redis_wait_for: Any,
) -> None:
    """What 0.1 producers and workers left behind (queue, staging list, leases, retries) is not lost.

    A rolling deploy: 0.1 producers still LPUSH to ``{ns}:queue``, a 0.1
    worker was killed right after its BLMOVE into ``{ns}:taking``, another
    held a lease, another scheduled a retry for one consumer. Once 0.2
    subscriptions register, each of those events reaches the subscriptions
    its name matches, and the retry only the subscription it names.
    """
    storage, keys = redis_storage, redis_storage.keys
    redis_raw.lpush(keys.queue, _envelope("order.created", "q1"), _envelope("user.joined", "q2"))
    redis_raw.lpush(keys.taking, _envelope("order.paid", "t1"))  # BLMOVEd, then SIGKILL
    redis_raw.hset(keys.reserved, "dead-worker:1", _envelope("order.shipped", "l1"))
    redis_raw.zadd(keys.leases, {"dead-worker:1": _server_ms(redis_raw) - 1000})  # expired
    # Counting routes what waits first: with no subscription yet, all four are parked.
    assert storage.stats()["parked"] == 4, storage.stats()

    registered = storage.subscribe([Subscription("billing", ("order.*",)),
                                    Subscription("audit", ("order.*", "user.*"))], HOST)
    assert [r.created for r in registered] == [True, True]
    assert [redis_raw.exists(key) for key in (keys.queue, keys.taking, keys.reserved, keys.leases)] \
        == [0, 0, 0, 0], "subscribe() left 0.1 messages unrouted"

    def ids(taken: list[Any]) -> set[str]:
        return {json.loads(d.message)["id"] for d in taken}

    billing = _reserve_until(storage, 3, 5, ("billing",))
    audit = _reserve_until(storage, 4, 5, ("audit",))
    assert ids(billing) == {"q1", "t1", "l1"}
    assert ids(audit) == {"q1", "q2", "t1", "l1"}
    assert {d.subscription for d in billing} == {"billing"}
    storage.ack(billing + audit)

    # A 0.1 producer still running: what it pushes is routed, at the latest
    # by the keep-alive of a process hosting subscriptions.
    redis_raw.lpush(keys.queue, _envelope("order.refunded", "q3"))
    assert storage.keep_alive(HOST, ["billing", "audit"]) == []
    assert not redis_raw.exists(keys.queue)
    taken = _reserve_until(storage, 1, 5, ("billing",)) + _reserve_until(storage, 1, 5, ("audit",))
    assert [json.loads(d.message)["id"] for d in taken] == ["q3", "q3"]
    storage.ack(taken)

    # A 0.1 retry of one consumer (tag of 16 characters + the envelope naming
    # it) goes, when due, to that subscription only, never to the others its
    # event matches; and not before it is due.
    retry = _envelope("order.created", "r1", attempt=1, consumer="billing")
    redis_raw.zadd(keys.delayed, {b"0123456789abcdef" + retry: _server_ms(redis_raw) + 1500})
    storage.keep_alive(HOST, ["billing", "audit"])
    assert storage.reserve(("billing", "audit"), 0) == [], "a 0.1 retry was delivered early"
    assert redis_raw.zcard(keys.delayed) == 1
    due: list[Any] = []

    def routed() -> bool:
        storage.keep_alive(HOST, ["billing", "audit"])
        due.extend(storage.reserve(("billing", "audit"), 0.05, 10))
        return bool(due)

    redis_wait_for(routed, 10, lambda: f"the due 0.1 retry was never routed: {storage.stats()}")
    assert [(d.subscription, d.message) for d in due] == [("billing", retry)]
    assert not redis_raw.exists(keys.delayed)
    storage.ack(due)
    # The four parked ones stay parked, for subscriptions still to come.
    assert storage.stats() == {**EMPTY, "parked": 4}, "an event of the 0.1 layout was delivered twice or kept"

    # A due 0.1 retry for a consumer no subscription is named after: its
    # siblings already ran, so it is a dead letter saying so, not a re-run.
    orphan = _envelope("order.created", "r2", attempt=1, consumer="shop.old:renamed")
    redis_raw.zadd(keys.delayed, {b"fedcba9876543210" + orphan: _server_ms(redis_raw) - 1})
    storage.keep_alive(HOST, ["billing", "audit"])
    assert storage.reserve(("billing", "audit"), 0.05, 10) == [], "an orphan 0.1 retry re-ran siblings"
    (letter,) = storage.dead_letters()
    assert letter.message == orphan and letter.subscription is None
    assert "shop.old:renamed" in letter.reason and "replay" in letter.reason


def test_renewing_keeps_a_lease_past_its_deadline_and_stopping_lets_it_expire(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """A holder renewing every 0.3s keeps a 1s lease for 2.5s; once it stops, another worker gets it."""
    holder = _subscribed(redis_storage_factory(lease=1))
    other = redis_storage_factory(namespace=holder.keys.namespace, lease=1)
    assert holder.renew_interval < holder.lease, "the core would renew too late"
    holder.push("job.long", b"long job")
    held = holder.reserve(S, 5)
    kept_until = time.monotonic() + 2.5
    while time.monotonic() < kept_until:
        holder.renew(held)
        assert other.reserve(S, 0.3) == [], "another worker took a message whose lease was renewed"
    renewed_at = time.monotonic()
    holder.renew(held)
    taken = _reserve_until(other, 1, timeout=10)
    assert [d.message for d in taken] == [b"long job"]
    assert 0.9 <= time.monotonic() - renewed_at <= 1.6
    other.ack(taken)


def test_the_core_heartbeat_keeps_a_handler_longer_than_the_lease_from_running_twice(
    rocketman_redis_server: Any, redis_storage_factory: Callable[..., RedisStorage],
    redis_wait_for: Any,
) -> None:
    """Two runtimes share a queue; a handler runs 2.5x the lease; it runs once, not twice."""
    namespace = redis_storage_factory().keys.namespace  # cleaned up by the fixture
    url = f"{rocketman_redis_server.url}?namespace={namespace}&lease=1"
    handlings: list[str] = []
    apps = [Rocketman(), Rocketman()]
    for app in apps:
        app.configure(storage=url, worker_count=2, latency=0.2)

        @app.on_event("slow.job")
        def slow(payload: Any, event: Any) -> None:
            handlings.append(event.id)
            time.sleep(2.5)  # the handler's work, longer than the lease

        app.start()
    try:
        event_id = apps[0].emit("slow.job")
        redis_wait_for(lambda: apps[0].stats()["reserved"] == 0 and handlings, 20,
                       lambda: f"never handled and acknowledged: {apps[0].stats()}")
        assert handlings == [event_id], "the lease expired under a running handler"
    finally:
        for app in apps:
            app.shutdown(timeout=5)


def test_due_times_and_lease_deadlines_come_from_the_redis_servers_clock(
    redis_storage: RedisStorage, redis_raw: redis.Redis, monkeypatch: Any,
) -> None:
    """This process's clock is an hour off: retries and leases still follow Redis's TIME."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    storage = _subscribed(redis_storage)
    sub = storage.keys.subscription("s")
    server_ms = _server_ms(redis_raw)
    storage.push_many([("job.failing", b"first try"), ("job.leased", b"leased")])
    failing, held = storage.reserve(S, 5, 2)
    storage.retry_later(failing, b"retry", 60)
    ((_, due),) = redis_raw.zrange(sub.delayed, 0, -1, withscores=True)
    ((_, deadline),) = redis_raw.zrange(sub.leases, 0, -1, withscores=True)
    assert abs(due - (server_ms + 60_000)) < 1000, "the retry's due time is not the server's now + delay"
    assert abs(deadline - (server_ms + storage.lease * 1000)) < 1000
    storage.push("job.failing", b"second try")
    (failing,) = storage.reserve(S, 5)
    storage.retry_later(failing, b"soon", 0.3)
    taken = _reserve_until(storage, 1, timeout=5)
    assert [d.message for d in taken] == [b"soon"], "a retry due in 0.3s by Redis's clock did not come"
    storage.ack([held, *taken])


def test_every_key_of_a_namespace_shares_its_hash_tag(
    redis_storage: RedisStorage, redis_raw: redis.Redis,
) -> None:
    """After every kind of operation, all the namespace's keys are ``{ns}:...`` in one Cluster slot."""
    storage = redis_storage
    _subscribed(storage, Subscription("orders", ("order.*",)), Subscription("all", ("*",)))
    storage.push_many([("order.a", b"a"), ("order.b", b"b"), ("order.c", b"c")])
    storage.push("user.joined", b"only for all")
    held = storage.reserve(("orders",), 1, 3)
    storage.retry_later(held[0], b"later", 3600)
    storage.dead_letter(held[1], b"dead", "reason")
    storage.dead_letter(held[2], b"replayed", "reason")
    storage.replay_dead_letters({storage.dead_letters()[1].id: ("orders", b"again")})
    storage.keep_alive(HOST, ["orders", "all"])
    storage.release(storage.reserve(("all",), 1))
    storage.unsubscribe("all")
    storage.push("nobody.listens", b"parked")  # no subscription matches: parked
    storage.subscribe([Subscription("late", ("nobody.*",))], HOST)  # copies it
    assert storage.stats()["parked"] == 1
    assert len(storage.reserve(("late",), 1)) == 1  # held: a lease, as a worker has one

    namespace = storage.keys.namespace
    tag = f"{{{namespace}}}:"
    found = {key.decode() for key in redis_raw.scan_iter(match=f"*{namespace}*")}
    assert {"orders", "late"} <= {info.name for info in storage.subscriptions()}
    assert found, "the run left no key"
    assert all(key.startswith(tag) for key in found), sorted(found)
    # The cleanup pattern of the namespace finds every one of them.
    assert {key.decode() for key in redis_raw.scan_iter(match=storage.keys.pattern)} == found
    known = set(storage.keys.shared())
    for name in ("orders", "all", "late"):
        known.update(storage.keys.subscription(name).all())
    assert found <= known, f"keys outside the layout: {sorted(found - known)}"
    assert all(key.startswith(tag) for key in known)
    assert len({key_slot(key.encode()) for key in found | known}) == 1, "keys of one namespace in two slots"


def test_interrupt_wakes_a_blocked_reserve_at_once(
    redis_storage: RedisStorage, redis_raw: redis.Redis, redis_wait_for: Any,
) -> None:
    """A reserve blocked with a 30s timeout returns [] promptly after interrupt()."""
    _subscribed(redis_storage)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(redis_storage.reserve(S, 30)), daemon=True)
    thread.start()
    redis_wait_for(lambda: any(client.get("cmd") == "blpop" for client in redis_raw.client_list()),
                   5, lambda: "the reserve never blocked in BLPOP")
    interrupted = time.monotonic()
    redis_storage.interrupt()
    thread.join(5)
    assert result == [[]]
    assert time.monotonic() - interrupted < 0.5


def test_release_gives_deliveries_back_to_the_front_of_the_queue_in_order(
    redis_storage: RedisStorage,
) -> None:
    """What a stopping worker gives back is next in line, in its order, and no longer reserved."""
    _subscribed(redis_storage)
    redis_storage.push_many([("job", b"a"), ("job", b"b"), ("job", b"c"), ("job", b"d")])
    held = redis_storage.reserve(S, 5, 4)
    redis_storage.push("job", b"e")
    redis_storage.release(held[2:])
    assert redis_storage.stats() == {**EMPTY, "queued": 3, "reserved": 2}
    again = _reserve_until(redis_storage, 3, timeout=5)
    assert [d.message for d in again] == [b"c", b"d", b"e"]
    redis_storage.release(held[2:])  # released already: changes nothing
    redis_storage.ack(held[:2] + again)
    assert redis_storage.stats()["reserved"] == 0


def test_one_lease_covers_a_batch_and_what_is_settled_of_it_never_comes_back(
    redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis,
) -> None:
    """A batch is one lease; acked, retried and dead-lettered members stay so when the holder dies."""
    crashed = _subscribed(redis_storage_factory(lease=30))
    survivor = redis_storage_factory(namespace=crashed.keys.namespace, lease=30)
    keys = crashed.keys.subscription("s")
    crashed.push_many([("job.run", name) for name in (b"acked", b"retried", b"dead", b"unsettled", b"also")])
    held = crashed.reserve(S, 5, 10)
    assert [d.message for d in held] == [b"acked", b"retried", b"dead", b"unsettled", b"also"]
    assert redis_raw.zcard(keys.leases) == 1, "a batch must cost one lease, not one per message"
    assert crashed.stats()["reserved"] == 5

    packed = redis_raw.hget(keys.reserved, held[0].token)
    crashed.ack(held[:1])
    crashed.retry_later(held[1], b"retried, again", 3600)
    crashed.dead_letter(held[2], b"dead", "it failed")
    assert crashed.stats() == {**EMPTY, "reserved": 2, "delayed": 1, "dead": 1}
    # Settling part of a batch notes indices; it never rewrites the batch (a failing
    # consumer's retries cost the same whatever the batch size).
    assert redis_raw.hget(keys.reserved, held[0].token) == packed

    # The holder dies: its lease expires (here: moved to the past on the server's clock).
    redis_raw.zadd(keys.leases, {held[0].token: _server_ms(redis_raw) - 1000})
    taken = _reserve_until(survivor, 2, timeout=5)
    assert [d.message for d in taken] == [b"unsettled", b"also"], "only what was not settled comes back"
    assert survivor.stats() == {**EMPTY, "reserved": 2, "delayed": 1, "dead": 1}
    crashed.ack(held[3:])  # too late: the lease is gone, nothing changes
    assert survivor.stats()["reserved"] == 2
    survivor.ack(taken)
    assert survivor.stats() == {**EMPTY, "delayed": 1, "dead": 1}
    assert redis_raw.hget(keys.reserved, "#") == b"0" and redis_raw.zcard(keys.leases) == 0


def test_a_stop_giving_back_a_batch_while_its_worker_acknowledges_it_settles_each_message_once(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """Ack and release of one batch from two threads: each message is acknowledged or queued again, never both or neither."""
    storage = _subscribed(redis_storage_factory())
    for _ in range(20):
        storage.push_many([("job.run", f"m{i}".encode()) for i in range(8)])
        held = storage.reserve(S, 5, 8)
        assert len(held) == 8
        go = threading.Barrier(2)

        def settle(action: Callable[[Sequence[Any]], None], part: Sequence[Any],
                   go: threading.Barrier = go) -> None:
            go.wait()
            action(part)

        threads = [threading.Thread(target=settle, args=(storage.ack, held[:5])),
                   threading.Thread(target=settle, args=(storage.release, held))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        stats = storage.stats()
        assert stats["reserved"] == 0, stats
        again = _reserve_until(storage, stats["queued"], timeout=5)
        acked = {d.message for d in held[:5]}
        # Released first: all 8 back. Acknowledged first: the other 3. Never a mix of a message in both.
        assert {d.message for d in again} in ({d.message for d in held}, {d.message for d in held} - acked)
        storage.ack(again)
        assert storage.stats() == EMPTY


def test_a_lease_of_one_message_written_by_the_earlier_layout_still_comes_back(
    redis_storage: RedisStorage, redis_raw: redis.Redis,
) -> None:
    """A worker of the previous version leased message by message: its expired leases are not lost."""
    storage = _subscribed(redis_storage)
    keys = storage.keys.subscription("s")
    redis_raw.hset(keys.reserved, "old-worker:7:1", b"leased alone")
    redis_raw.zadd(keys.leases, {"old-worker:7:1": _server_ms(redis_raw) - 1000})
    (delivery,) = _reserve_until(storage, 1, timeout=5)
    assert delivery.message == b"leased alone"
    storage.ack([delivery])
    assert redis_raw.hlen(keys.reserved) == 1 and redis_raw.zcard(keys.leases) == 0  # only "#" is left
