"""Fixtures of the Redis relay's tests: relays on the session's redis-server, waiting, collecting.

The tests import nothing from here (pytest runs with ``--import-mode=importlib``):
the helpers reach them as fixtures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rocketman_relay_redis import RedisRelay
from rocketman_relay_redis.testing import RedisServer

from rocketman_core.testing import EmitRecorder, wait_until


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    wait_until(condition, timeout, f"timed out waiting for {what}", interval=0.005)


def relay_threads() -> list[threading.Thread]:
    """The relay threads alive now."""
    return [t for t in threading.enumerate() if t.name == "rocketman-relay-redis" and t.is_alive()]


# Fast timings, so that faults are noticed in a test's time, not a production's.
FAST = {"latency": 0.05, "health_check_interval": 0.5, "socket_timeout": 1.0,
        "backoff": 0.02, "backoff_max": 0.2}


@pytest.fixture
def make_redis_relay(rocketman_redis_server: RedisServer) -> Iterator[Callable[..., RedisRelay]]:
    """Build relays on the session's server (options override); all stopped at teardown."""
    built: list[RedisRelay] = []

    def make(**options: Any) -> RedisRelay:
        if "client_factory" not in options:
            options.setdefault("url", rocketman_redis_server.url)
        relay = RedisRelay(**{**FAST, **options})
        built.append(relay)
        return relay

    yield make
    for relay in built:
        relay.stop(timeout=5)
    wait_for(lambda: not relay_threads(), "the relay threads to end", timeout=5)


@pytest.fixture
def redis_publisher(rocketman_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the session's server, to PUBLISH with."""
    client = redis.Redis.from_url(rocketman_redis_server.url)
    yield client
    client.close()


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., None]:
    """The :func:`wait_for` function: poll a condition within a deadline."""
    return wait_for


@pytest.fixture
def collected() -> Callable[[], EmitRecorder]:
    """Make recording emit functions (``EmitRecorder``) for relays started by hand."""
    return EmitRecorder


@pytest.fixture(name="relay_threads")
def relay_threads_fixture() -> Callable[[], list[threading.Thread]]:
    """The :func:`relay_threads` function: the relay threads alive now."""
    return relay_threads
