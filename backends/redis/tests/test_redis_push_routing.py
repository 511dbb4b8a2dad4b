"""One emit goes straight into its subscriptions' queues, and lands where the router would put it.

``push`` routes by the storage's copy of the table of subscriptions (PUSH),
unless that copy is out of date or older events wait in the inbox: then the
event goes onto the inbox and a router routes it. These tests stop every
router first (the subscribing storage is closed), so that what sits in the
inbox stays there until a test routes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rocketman_redis import RedisStorage

from rocketman_core import Subscription

#: Subscriptions whose patterns cover what the router's matches.lua knows.
PATTERNS = {
    "exact": ("user.signed_up",),
    "prefix": ("user.*",),
    "everything": ("*",),
    "inside": ("order.*.paid",),
    "several": ("billing.refund", "audit.*"),
    "dots": ("a.b",),  # a dot is itself, not any character
    "dot_star": ("a.*",),
}
NAMES = ["user.signed_up", "user.", "order.1.paid", "order.paid", "billing.refund", "audit.x.y",
         "a.b", "aXb", "a.c", "other", "user.signed_up.late"]


def _queue(client: redis.Redis, storage: RedisStorage, subscription: str) -> list[bytes]:
    """The subscription's queue, oldest first (pushes go left, workers take from the right)."""
    return list(reversed(client.lrange(storage.keys.subscription(subscription).queue, 0, -1)))


def _subscribed(factory: Callable[..., RedisStorage], patterns: dict[str, tuple[str, ...]],
                namespace: str | None = None) -> str:
    """Register ``patterns`` in a fresh namespace (or ``namespace``) and stop that storage's router."""
    options = {} if namespace is None else {"namespace": namespace}
    subscriber = factory(**options)
    subscriber.subscribe([Subscription(name, p) for name, p in patterns.items()], "test-host")
    subscriber.close()
    return subscriber.keys.namespace


def test_each_emit_reaches_the_queues_the_router_would_route_it_to(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> None:
    routed_by_push = _subscribed(redis_storage_factory, PATTERNS)
    routed_by_router = _subscribed(redis_storage_factory, PATTERNS)
    producer = redis_storage_factory(namespace=routed_by_push)
    other = redis_storage_factory(namespace=routed_by_router)

    producer.push("warm.up", b"first")  # the first push reads the table (it went to the inbox)
    producer._route()
    for name in NAMES:
        producer.push(name, name.encode())
    assert redis_raw.llen(producer.keys.queue) == 0, "the emits went to the inbox, not their queues"

    other.push_many([(name, name.encode()) for name in NAMES])  # the inbox, then ROUTE
    other._route()
    for subscription in PATTERNS:
        direct = [m for m in _queue(redis_raw, producer, subscription) if m != b"first"]
        routed = _queue(redis_raw, other, subscription)
        assert direct == routed, f"{subscription}: PUSH put {direct}, the router {routed}"
    assert _queue(redis_raw, producer, "dots") == [b"a.b"]
    assert _queue(redis_raw, producer, "inside") == [b"order.1.paid"]
    assert _queue(redis_raw, producer, "dot_star") == [b"a.b", b"a.c"]


def test_an_emit_waits_behind_older_events_still_in_the_inbox(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> None:
    producer = redis_storage_factory(namespace=_subscribed(redis_storage_factory, {"s": ("*",)}))
    producer.push("warm.up", b"0")
    producer._route()
    producer.push_many([("e", str(n).encode()) for n in range(1, 101)])  # waits in the inbox
    producer.push("e", b"101")
    assert redis_raw.llen(producer.keys.queue) == 101, "the emit jumped ahead of the inbox"
    producer._route()
    assert _queue(redis_raw, producer, "s") == [str(n).encode() for n in range(102)]


def test_an_emit_waits_behind_what_a_router_took_and_has_not_routed(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> None:
    """A router killed after moving events to ``taking``: a new emit still comes after them."""
    producer = redis_storage_factory(namespace=_subscribed(redis_storage_factory, {"s": ("*",)}))
    producer.push("warm.up", b"0")
    producer._route()
    redis_raw.lpush(producer.keys.taking, b"\0e\n1")  # an inbox entry, BLMOVEd, then SIGKILL
    producer.push("e", b"2")
    assert redis_raw.llen(producer.keys.queue) == 1, "the emit jumped ahead of what taking holds"
    producer._route()
    assert _queue(redis_raw, producer, "s") == [b"0", b"1", b"2"]


def test_an_emit_by_an_out_of_date_table_reaches_the_subscriptions_of_its_time(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> None:
    namespace = _subscribed(redis_storage_factory, {"a": ("*",)})
    producer = redis_storage_factory(namespace=namespace)
    producer.push("e", b"learns the table")
    producer._route()
    producer.push("e", b"to a")
    assert _queue(redis_raw, producer, "a") == [b"learns the table", b"to a"]

    _subscribed(redis_storage_factory, {"b": ("*",)}, namespace=namespace)  # the table changes
    producer.push("e", b"to a and b")  # by the old table it is a's only: it goes to the inbox
    assert redis_raw.llen(producer.keys.queue) == 1
    producer._route()
    producer.push("e", b"straight to both")  # the new table came back with the last push
    assert redis_raw.llen(producer.keys.queue) == 0
    assert _queue(redis_raw, producer, "a")[-2:] == [b"to a and b", b"straight to both"]
    assert _queue(redis_raw, producer, "b") == [b"to a and b", b"straight to both"]


@pytest.mark.parametrize("scripts", ["kept", "flushed while it waits"])
def test_an_emit_wakes_a_worker_blocked_on_its_subscription(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis, scripts: str) -> None:
    # The worker's TAKE waits in the server behind its BLPOP and runs when a
    # push ends the BLPOP; a server that forgot the script (restarted,
    # flushed) answers NOSCRIPT to it, and the worker loads it and takes.
    namespace = _subscribed(redis_storage_factory, {"s": ("*",)})
    producer = redis_storage_factory(namespace=namespace)
    worker = redis_storage_factory(namespace=namespace)
    producer.push("e", b"learns the table")
    producer._route()
    assert [d.message for d in worker.reserve(("s",), 5)] == [b"learns the table"]
    got: list[bytes] = []
    taken = threading.Event()

    def reserve() -> None:
        got.extend(d.message for d in worker.reserve(("s",), 30))
        taken.set()

    thread = threading.Thread(target=reserve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not worker._blocked:  # blocked in BLPOP on the wake-up list
        assert time.monotonic() < deadline, "the worker never blocked"
        time.sleep(0.001)
    if scripts != "kept":
        redis_raw.script_flush()
    producer.push("e", b"now")
    assert taken.wait(5), "no router runs: the emit itself must wake the worker"
    assert got == [b"now"]


def test_push_async_goes_straight_to_the_queues_too_and_loads_its_script_when_the_server_lost_it(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> None:
    import asyncio

    producer = redis_storage_factory(namespace=_subscribed(redis_storage_factory, {"s": ("e.*",)}))

    async def emit() -> None:
        await producer.push_async("e.one", b"1")
        redis_raw.script_flush()  # as a restarted server would
        await producer.push_async("e.two", b"2")
        await producer.push_async("other", b"nobody's")  # no subscription: the inbox, to be parked

    asyncio.run(emit())
    assert _queue(redis_raw, producer, "s") == [b"1", b"2"]
    assert redis_raw.llen(producer.keys.queue) == 1


def test_a_user_the_acl_refuses_scripts_still_emits_onto_the_inbox_and_says_so_once(
        redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis,
        rocketman_redis_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    namespace = _subscribed(redis_storage_factory, {"s": ("*",)})
    user = f"producer-{namespace}"
    redis_raw.acl_setuser(user, enabled=True, passwords=["+secret"], categories=["+@all"],
                          commands=["-evalsha", "-eval", "-script"], keys=["*"], channels=["*"])
    try:
        url = rocketman_redis_server.url.replace("redis://", f"redis://{user}:secret@", 1)
        producer = redis_storage_factory(url=url, namespace=namespace)
        async_producer = redis_storage_factory(url=url, namespace=namespace)
        with caplog.at_level(logging.WARNING, logger="rocketman.redis"):
            producer.push("e", b"1")
            producer.push("e", b"2")
            asyncio.run(async_producer.push_async("e", b"3"))
        warnings = [r for r in caplog.records if "refuses this user" in r.getMessage()]
        assert len(warnings) == 2, [r.getMessage() for r in caplog.records]  # once per storage
        assert not any("secret" in w.getMessage() for w in warnings)
        assert redis_raw.llen(producer.keys.queue) == 3, "the emits must wait in the inbox"
    finally:
        redis_raw.acl_deluser(user)
    router = redis_storage_factory(namespace=namespace)
    router._route()
    assert _queue(redis_raw, router, "s") == [b"1", b"2", b"3"]
