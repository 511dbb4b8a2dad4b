"""What a PUBLISH becomes: payloads, filtering by pattern, channel and prefix, drops."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rocketman_memory import MemoryStorage
from rocketman_relay_redis import RedisRelay

from rocketman_core import Rocketman, Subscription
from rocketman_core.pytest_plugin import RecordingRocketman
from rocketman_core.testing import wait_until

MakeRelay = Callable[..., RedisRelay]


def started(relay: RedisRelay, emit: Callable[[str, Any], Any]) -> RedisRelay:
    relay.start(emit)
    assert relay.wait_subscribed(10), "the relay did not subscribe within 10s"
    return relay


def wait_events(app: RecordingRocketman, count: int, timeout: float = 10.0) -> list[tuple[str, object]]:
    """Wait until the relay emitted ``count`` events into ``app``; return them."""
    wait_until(lambda: len(app.emitted) >= count, timeout,
               lambda: f"only {len(app.emitted)} of {count} events arrived", interval=0.005)
    return [(event.name, event.payload) for event in app.emitted]


def test_json_becomes_its_value_and_other_text_stays_text(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    started(make_redis_relay(), rocketman_app.emit)
    messages = ['{"order": 7, "items": ["a", "b"]}', "42", '"quoted"', "payload",
                "not {json", "NaN", "", "1e400", '{"total": -1e999}', "2.5"]
    for message in messages:
        assert redis_publisher.publish("hello", message) == 1
    assert wait_events(rocketman_app, len(messages)) == [
        ("hello", {"order": 7, "items": ["a", "b"]}),
        ("hello", 42),
        ("hello", "quoted"),
        ("hello", "payload"),
        ("hello", "not {json"),
        ("hello", "NaN"),  # Python's parser takes NaN, JSON does not: it stays text
        ("hello", ""),
        # One rule: not strict JSON (a number beyond a double overflows to
        # infinity, which no JSON can carry) stays text, rather than failing at emit.
        ("hello", "1e400"),
        ("hello", '{"total": -1e999}'),
        ("hello", 2.5),
    ]


def test_bytes_that_are_not_utf8_are_dropped_counted_and_the_relay_goes_on(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rocketman.relay.redis")
    relay = started(make_redis_relay(), rocketman_app.emit)
    redis_publisher.publish("hello", b"\xff\xfe broken")
    redis_publisher.publish(b"chan\xff", "fine payload, broken channel")
    redis_publisher.publish("hello", "after")
    assert wait_events(rocketman_app, 1) == [("hello", "after")]
    stats = relay.stats()
    assert (stats["received"], stats["emitted"], stats["dropped_not_utf8"], stats["dropped"]) == (3, 1, 2, 2)
    assert any("not UTF-8" in record.getMessage() for record in caplog.records)


def test_channel_names_that_are_not_event_names_are_dropped(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    relay = started(make_redis_relay(), rocketman_app.emit)
    redis_publisher.publish("has space", "x")
    redis_publisher.publish("x" * 300, "too long a name")
    redis_publisher.publish("fine", "x")
    assert wait_events(rocketman_app, 1) == [("fine", "x")]
    assert relay.stats()["dropped_bad_name"] == 2


def test_messages_over_max_bytes_are_dropped(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    relay = started(make_redis_relay(max_bytes="100"), rocketman_app.emit)  # as from a URL
    redis_publisher.publish("big", "x" * 101)
    redis_publisher.publish("big", "y" * 100)
    assert wait_events(rocketman_app, 1) == [("big", "y" * 100)]
    assert relay.stats()["dropped_too_large"] == 1


def test_a_failing_emit_is_counted_and_the_relay_goes_on(
    make_redis_relay: MakeRelay, redis_publisher: redis.Redis, caplog: pytest.LogCaptureFixture,
    wait_for: Any,
) -> None:
    # A real storage that refuses events: full, and no worker takes any. A
    # subscription takes every event (an event nothing subscribes to would
    # be dropped by the memory storage, not refused).
    storage = MemoryStorage(maxsize=1, full_timeout=0)
    storage.subscribe([Subscription("relayed", ("*",))], "test-host")
    app = Rocketman()
    app.configure(storage=storage, executor="threads", worker_count=0)
    relay = started(make_redis_relay(), app.emit)
    try:
        redis_publisher.publish("first", "1")
        redis_publisher.publish("second", "2")  # the storage is full: QueueFull
        wait_for(lambda: relay.stats()["dropped_emit_failed"] == 1, "the failed emit to be counted")
        assert any(r.levelno == logging.ERROR and "QueueFull" in r.getMessage() for r in caplog.records)
        assert storage.stats()["dropped"] == 0, "the storage dropped an event instead of refusing it"
        storage.ack(storage.reserve(("relayed",), 0, 1))  # room again
        redis_publisher.publish("third", "3")
        wait_for(lambda: relay.stats()["emitted"] == 2, "the relay to emit again once there is room")
        assert b'"name":"third"' in storage.reserve(("relayed",), 0, 5)[0].message
    finally:
        relay.stop(5)
        app.shutdown(timeout=1)


def test_a_pattern_selects_channels_in_redis(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    relay = started(make_redis_relay(pattern="orders.*"), rocketman_app.emit)
    assert redis_publisher.publish("users.created", "u") == 0  # nobody listens to it
    redis_publisher.publish("orders.created", "a")
    redis_publisher.publish("orders.shipped", "b")
    # Messages on one connection arrive in order: once the last is here, an
    # unwanted one would have arrived before it.
    assert wait_events(rocketman_app, 2) == [("orders.created", "a"), ("orders.shipped", "b")]
    assert relay.stats()["received"] == 2


def test_several_patterns_from_a_comma_separated_string(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    started(make_redis_relay(patterns="orders.*, users.*"), rocketman_app.emit)
    redis_publisher.publish("billing.paid", "no")
    redis_publisher.publish("users.created", "u")
    redis_publisher.publish("orders.created", "o")
    assert wait_events(rocketman_app, 2) == [("users.created", "u"), ("orders.created", "o")]


def test_exact_channels_are_subscribed_without_patterns(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    relay = started(make_redis_relay(channels=["deploys", "alerts"]), rocketman_app.emit)
    assert redis_publisher.pubsub_numpat() == 0
    assert redis_publisher.publish("deploys.prod", "no") == 0
    redis_publisher.publish("alerts", "disk full")
    redis_publisher.publish("deploys", '{"v": 2}')
    assert wait_events(rocketman_app, 2) == [("alerts", "disk full"), ("deploys", {"v": 2})]
    assert relay.stats()["received"] == 2


def test_a_prefix_is_stripped_and_selects_its_channels(
    rocketman_app: RecordingRocketman, make_redis_relay: MakeRelay, redis_publisher: redis.Redis
) -> None:
    relay = started(make_redis_relay(prefix="app."), rocketman_app.emit)
    assert redis_publisher.publish("other.hello", "no") == 0  # the default pattern is app.*
    redis_publisher.publish("app.hello", "world")
    assert wait_events(rocketman_app, 1) == [("hello", "world")]
    assert relay.options.patterns == ("app.*",)


def test_a_prefix_with_a_wider_pattern_drops_what_lacks_it(
    make_redis_relay: MakeRelay, redis_publisher: redis.Redis, collected: Any
) -> None:
    emitted = collected()
    relay = started(make_redis_relay(prefix="app.", pattern="*"), emitted)
    redis_publisher.publish("other.hello", "no")
    redis_publisher.publish("app.user.created", "yes")
    assert emitted.wait_for_count(1) == [("user.created", "yes")]
    assert relay.stats()["dropped_no_prefix"] == 1


def test_a_prefix_with_glob_characters_is_matched_literally(
    make_redis_relay: MakeRelay, redis_publisher: redis.Redis, collected: Any
) -> None:
    emitted = collected()
    started(make_redis_relay(prefix="a[1]*"), emitted)
    assert redis_publisher.publish("a1.x", "no") == 0
    redis_publisher.publish("a[1]*x", "yes")
    assert emitted.wait_for_count(1) == [("x", "yes")]
