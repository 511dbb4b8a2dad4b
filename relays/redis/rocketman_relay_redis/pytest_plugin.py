"""The pytest plugin of rocketman-relay-redis (entry point ``pytest11``): ``rocketman_redis_server``.

``rocketman_redis_server`` is a real ``redis-server`` for the test session,
on a free port (``.url``, ``.port``); a missing binary fails the tests that
use it, saying how to install it, never skips them. Tests that stop,
restart or freeze a server build a :class:`~rocketman_relay_redis.testing.RedisServer`
of their own instead.

pytest imports this module in every session of an environment where the
distribution is installed: it imports nothing heavy until the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .testing import RedisServer

__all__ = ["rocketman_redis_server"]


@pytest.fixture(scope="session")
def rocketman_redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session; fails clearly if none is installed."""
    from .testing import RedisServer

    with RedisServer() as server:
        yield server
