"""The parked log: bounded by count and age, evictions counted and logged, never silent."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rocketman_redis import RedisStorage

from rocketman_core import Subscription


def _settled(storage: RedisStorage, **expected: int) -> bool:
    stats = storage.stats()
    return all(stats[key] == value for key, value in expected.items())


def test_events_beyond_park_limit_are_evicted_oldest_first_counted_and_logged_once(
    redis_storage_factory: Callable[..., RedisStorage], caplog: pytest.LogCaptureFixture,
) -> None:
    """park_limit=3: 7 events nobody wants keep the 3 newest; 4 count as dropped; one WARNING."""
    storage = redis_storage_factory(park_limit=3)
    with caplog.at_level(logging.WARNING, logger="rocketman.redis"):
        for n in range(5):
            storage.push("order.placed", f"placed {n}".encode())
        storage.push_many([("order.placed", b"placed 5"), ("order.placed", b"placed 6")])
        assert _settled(storage, parked=3, dropped=4), storage.stats()
    evictions = [r for r in caplog.records if "evicted" in r.getMessage()]
    assert len(evictions) == 1, [r.getMessage() for r in evictions]
    message = evictions[0].getMessage()
    assert "4 parked events were evicted" in message and "park_limit" in message, message

    [late] = storage.subscribe([Subscription("late", ("order.*",))], "test-host")
    assert late.parked == 3
    taken = storage.reserve(("late",), 5, 10)
    assert [d.message for d in taken] == [b"placed 4", b"placed 5", b"placed 6"], (
        "the parked log must keep the newest, in order")


def test_parked_events_older_than_park_max_age_are_evicted_by_the_hosts_keep_alive(
    redis_storage_factory: Callable[..., RedisStorage], redis_wait_for: Any,
) -> None:
    """park_max_age=1: a parked event is dropped (counted) once it is older than a second."""
    storage = redis_storage_factory(park_max_age=1)
    storage.push("report.ready", b"old")
    assert _settled(storage, parked=1, dropped=0)
    storage.subscribe([Subscription("other", ("unrelated",))], "host")

    def aged_out() -> bool:
        storage.keep_alive("host", ["other"])  # what every hosting process does every 5 s
        return _settled(storage, parked=0, dropped=1)

    redis_wait_for(aged_out, 10, lambda: f"the old parked event was not evicted: {storage.stats()}")
    [fresh] = storage.subscribe([Subscription("reports", ("report.*",))], "host")
    assert fresh.parked == 0, "an evicted event was copied into a new subscription"


def test_park_limit_0_parks_nothing_and_counts_every_unrouted_event(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """With park_limit=0 an event nobody subscribes to is dropped at once, and counted."""
    storage = redis_storage_factory(park_limit=0)
    storage.push_many([("nobody.listens", b"a"), ("nobody.listens", b"b")])
    assert _settled(storage, parked=0, dropped=2), storage.stats()


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("park_limit", "-1", "option 'park_limit' must be an integer, at least 0 (0: park nothing), not '-1'"),
    ("park_limit", "many", "option 'park_limit' must be an integer, at least 0 (0: park nothing), not 'many'"),
    ("park_max_age", "-5", "option 'park_max_age' must be a finite number of seconds, at least 0 (0: no limit)"),
])
def test_bad_parking_options_are_errors_that_name_them(
    rocketman_redis_server: Any, option: str, value: str, expected: str,
) -> None:
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        RedisStorage(rocketman_redis_server.url, **{option: value})


def test_events_pushed_before_a_subscription_changes_are_routed_with_the_old_patterns(
    redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis,
) -> None:
    """Routing is as of the push: a pattern change routes what waits in the inbox first."""
    worker = redis_storage_factory()
    producer = redis_storage_factory(namespace=worker.keys.namespace)
    worker.subscribe([Subscription("s", ("a",))], "host")
    worker.close()  # its router stops: what producers push onto the inbox waits there
    producer.push_many([("a", b"pushed while s matched a"), ("b", b"pushed while s matched a only")])
    assert redis_raw.llen(producer.keys.queue) == 2, "the events were routed already"
    again = redis_storage_factory(namespace=producer.keys.namespace)
    [changed] = again.subscribe([Subscription("s", ("b",))], "host")
    assert changed.previous == ("a",)
    producer.push("a", b"pushed after the change")
    producer.push("b", b"pushed after the change, matches")
    deadline = time.monotonic() + 10
    taken: list[bytes] = []
    while len(taken) < 2 and time.monotonic() < deadline:
        batch = again.reserve(("s",), 0.5, 10)
        taken += [d.message for d in batch]
        again.ack(batch)
    assert taken == [b"pushed while s matched a", b"pushed after the change, matches"]
    assert again.stats()["parked"] == 2, "what matched nothing when pushed must be parked"


def test_a_subscription_removed_and_registered_again_does_not_copy_what_it_had_again(
    redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """Parked events stay for newcomers; a name registered before is not one for what it had."""
    storage = redis_storage_factory()
    storage.push_many([("user.signed_up", b"early 1"), ("user.signed_up", b"early 2")])
    [first] = storage.subscribe([Subscription("mailer.welcome", ("user.*",))], "host")
    assert first.parked == 2
    assert storage.unsubscribe("mailer.welcome")
    storage.push("user.signed_up", b"while it was gone")  # matches nothing: parked
    [again] = storage.subscribe([Subscription("mailer.welcome", ("user.*",))], "host")
    assert again.created and again.parked == 1, "the early welcomes would be sent twice"
    assert [d.message for d in storage.reserve(("mailer.welcome",), 5, 10)] == [b"while it was gone"]
    [newcomer] = storage.subscribe([Subscription("analytics", ("*",))], "host")
    assert newcomer.parked == 3, "a new name gets every parked event"
