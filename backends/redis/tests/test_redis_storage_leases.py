"""Leases, renewals, the server's clock, the hash tag: what only the Redis storage promises."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.crc import key_slot
from rocketman_redis import RedisStorage

from rocketman_core import Rocketman


def _reserve_until(storage: RedisStorage, count: int, timeout: float) -> list[Any]:
    deliveries: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(deliveries) < count and time.monotonic() < deadline:
        deliveries += storage.reserve(max(0.01, min(1.0, deadline - time.monotonic())), 10)
    return deliveries


def test_an_expired_lease_gives_the_messages_to_another_worker_within_about_the_lease(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """A worker that reserved and died (no ack, no renew): another gets its messages after ~lease."""
    crashed = redis_storage_factory(lease=1)
    survivor = redis_storage_factory(namespace=crashed.keys.namespace, lease=1)
    crashed.push_many([b"first", b"second"])
    held = crashed.reserve(5, 10)
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
    assert survivor.stats() == {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0}


def test_a_message_a_worker_left_in_the_staging_list_when_it_died_is_taken_by_the_next(
    redis_storage: RedisStorage, redis_raw: redis.Redis,
) -> None:
    """A worker killed right after its BLMOVE loses nothing: the next reserve of anyone takes it."""
    redis_storage.push_many([b"moved", b"still queued"])
    # What a worker's BLMOVE does, just before the worker is SIGKILLed.
    keys = redis_storage.keys
    assert redis_raw.blmove(keys.queue, keys.taking, 1, "RIGHT", "LEFT") == b"moved"
    assert redis_storage.stats()["queued"] == 2, "a staged message must count as queued"
    taken = redis_storage.reserve(5, 10)
    assert [d.message for d in taken] == [b"moved", b"still queued"]
    redis_storage.ack(taken)
    assert redis_storage.stats() == {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0}


def test_renewing_keeps_a_lease_past_its_deadline_and_stopping_lets_it_expire(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """A holder renewing every 0.3s keeps a 1s lease for 2.5s; once it stops, another worker gets it."""
    holder = redis_storage_factory(lease=1)
    other = redis_storage_factory(namespace=holder.keys.namespace, lease=1)
    assert holder.renew_interval < holder.lease, "the core would renew too late"
    holder.push(b"long job")
    held = holder.reserve(5)
    kept_until = time.monotonic() + 2.5
    while time.monotonic() < kept_until:
        holder.renew(held)
        assert other.reserve(0.3) == [], "another worker took a message whose lease was renewed"
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
    seconds, micros = redis_raw.time()
    server_ms = seconds * 1000 + micros / 1000
    redis_storage.retry_later(b"retry", 60)
    redis_storage.push(b"leased")
    held = redis_storage.reserve(5)
    ((_, due),) = redis_raw.zrange(redis_storage.keys.delayed, 0, -1, withscores=True)
    ((_, deadline),) = redis_raw.zrange(redis_storage.keys.leases, 0, -1, withscores=True)
    assert abs(due - (server_ms + 60_000)) < 1000, "the retry's due time is not the server's now + delay"
    assert abs(deadline - (server_ms + redis_storage.lease * 1000)) < 1000
    redis_storage.retry_later(b"soon", 0.3)
    taken = _reserve_until(redis_storage, 1, timeout=5)
    assert [d.message for d in taken] == [b"soon"], "a retry due in 0.3s by Redis's clock did not come"
    redis_storage.ack(held + taken)


def test_every_key_of_a_namespace_shares_its_hash_tag(
    redis_storage: RedisStorage, redis_raw: redis.Redis,
) -> None:
    """After every kind of operation, all the namespace's keys are ``{ns}:...`` in one Cluster slot."""
    storage = redis_storage
    storage.push_many([b"a", b"b", b"c"])
    held = storage.reserve(1, 1)
    storage.retry_later(b"later", 3600)
    storage.dead_letter(b"dead", "reason")
    storage.dead_letter(b"replayed", "reason")
    storage.replay_dead_letters({storage.dead_letters()[1].id: b"again"})
    namespace = storage.keys.namespace
    keys = {key.decode() for key in redis_raw.scan_iter(match=f"*{namespace}*")}
    assert keys == {
        f"{{{namespace}}}:{suffix}" for suffix in
        ("queue", "reserved", "leases", "delayed", "dead", "dead:message", "dead:reason",
         "dead:time", "dead:seq")
    }
    assert keys <= set(storage.keys.all())
    assert len({key_slot(key.encode()) for key in keys}) == 1, "keys of one namespace in two slots"
    storage.ack(held)


def test_interrupt_wakes_a_blocked_reserve_at_once(
    redis_storage: RedisStorage, redis_raw: redis.Redis, redis_wait_for: Any,
) -> None:
    """A reserve blocked with a 30s timeout returns [] promptly after interrupt()."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(redis_storage.reserve(30)), daemon=True)
    thread.start()
    redis_wait_for(lambda: any(client.get("cmd") == "blmove" for client in redis_raw.client_list()),
                   5, lambda: "the reserve never blocked in BLMOVE")
    interrupted = time.monotonic()
    redis_storage.interrupt()
    thread.join(5)
    assert result == [[]]
    assert time.monotonic() - interrupted < 0.5


def test_release_gives_deliveries_back_to_the_front_of_the_queue_in_order(
    redis_storage: RedisStorage,
) -> None:
    """What a stopping worker gives back is next in line, in its order, and no longer reserved."""
    redis_storage.push_many([b"a", b"b", b"c", b"d"])
    held = redis_storage.reserve(5, 4)
    redis_storage.push(b"e")
    redis_storage.release(held[2:])
    assert redis_storage.stats() == {"queued": 3, "reserved": 2, "delayed": 0, "dead": 0}
    again = _reserve_until(redis_storage, 3, timeout=5)
    assert [d.message for d in again] == [b"c", b"d", b"e"]
    redis_storage.release(held[2:])  # released already: changes nothing
    redis_storage.ack(held[:2] + again)
    assert redis_storage.stats()["reserved"] == 0
