"""Dead letters by the ten thousand: list, limit, replay, purge (hardening 4 and 5)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rocketman_redis import RedisStorage

from rocketman_core import Rocketman, Subscription
from rocketman_core._envelope import encode

COUNT = 12_000  # 0.1 failed from 8,000 on: "too many results to unpack"


def _bury(client: redis.Redis, storage: RedisStorage, subscription: str, count: int,
          name: str = "order.paid", start: int = 1) -> None:
    """Write ``count`` dead letters of ``subscription`` straight into the storage's keys."""
    keys, sub = storage.keys, storage.keys.subscription(subscription)
    pipe = client.pipeline(transaction=False)
    for n in range(start, start + count):
        pipe.zadd(keys.dead, {n: n})
        pipe.zadd(sub.dead, {n: n})
        pipe.hset(keys.dead_messages, n, encode(name, {"n": n}, id=f"id-{n}", attempt=3))
        pipe.hset(keys.dead_reasons, n, f"ValueError: failed {n}\n\nTraceback ...")
        pipe.hset(keys.dead_times, n, f"{time.time():.6f}")
        pipe.hset(keys.dead_subscriptions, n, subscription)
    pipe.set(keys.dead_sequence, start + count)
    pipe.execute()


@pytest.fixture
def buried(redis_storage_factory: Callable[..., RedisStorage], redis_raw: redis.Redis) -> Any:
    storage = redis_storage_factory()
    storage.subscribe([Subscription("billing", ("order.*",))], "test-host")
    _bury(redis_raw, storage, "billing", COUNT)
    app = Rocketman()
    app.configure(storage=storage, worker_count=0)
    yield app, storage
    app.shutdown(timeout=5)


def test_twelve_thousand_dead_letters_are_listed_limited_and_counted(buried: Any) -> None:
    app, storage = buried
    started = time.monotonic()
    letters = app.dead_letters()
    assert len(letters) == COUNT and letters[0].id == "1" and letters[-1].id == str(COUNT)
    assert [r.id for r in app.dead_letters(limit=3)] == ["1", "2", "3"]
    assert len(storage.dead_letters(limit=2500)) == 2500
    assert app.stats()["dead"] == COUNT
    assert time.monotonic() - started < 30


def test_twelve_thousand_dead_letters_are_replayed_in_chunks_and_purged_without_listing(
    buried: Any, redis_raw: redis.Redis,
) -> None:
    app, storage = buried
    assert app.replay_dead_letters(event="order.paid") == COUNT
    stats = app.stats()
    assert stats["dead"] == 0 and stats["queued"] == COUNT
    _bury(redis_raw, storage, "billing", COUNT, start=COUNT + 1)
    assert app.purge_dead_letters() == COUNT
    assert app.stats()["dead"] == 0


def test_a_dead_letter_that_cannot_be_replayed_does_not_stop_the_others(
    buried: Any, redis_raw: redis.Redis, caplog: pytest.LogCaptureFixture,
) -> None:
    """One letter whose payload cannot be written back: the others replay, that one is reported."""
    app, storage = buried
    keys = storage.keys
    poisoned = b'{"id":"bad","name":"order.paid","payload":{"total":1e400}}'
    redis_raw.hset(keys.dead_messages, "5", poisoned)
    with caplog.at_level(logging.WARNING, logger="rocketman"):
        assert app.replay_dead_letters() == COUNT - 1
    (left,) = app.dead_letters()
    assert left.id == "5" and left.message == poisoned
    reported = [r.getMessage() for r in caplog.records if "cannot be replayed" in r.getMessage()]
    assert len(reported) == 1 and "dead letter 5" in reported[0], reported
