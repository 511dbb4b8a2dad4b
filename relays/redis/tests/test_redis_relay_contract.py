"""rocketman's relay conformance kit, run against the Redis relay and a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from rocketman_relay_redis import RedisRelay

from rocketman_core.testing import RedisServer, RelayContract


class TestRedisRelayContract(RelayContract):
    """The promises of ``rocketman_core.Relay``, kept by ``RedisRelay``.

    Each test listens under a prefix of its own (``<prefix>rocketman.contract``),
    stripped by the relay, so tests sharing the session's server do not hear
    each other.
    """

    @pytest.fixture
    def channel_prefix(self) -> str:
        return f"kit-{uuid.uuid4().hex[:8]}."

    @pytest.fixture
    def relay(self, rocketman_redis_server: RedisServer, channel_prefix: str) -> RedisRelay:
        return RedisRelay(url=rocketman_redis_server.url, prefix=channel_prefix, latency=0.1)

    @pytest.fixture
    def publish(
        self, rocketman_redis_server: RedisServer, channel_prefix: str
    ) -> Iterator[Callable[[str, str], None]]:
        client = redis.Redis.from_url(rocketman_redis_server.url)

        def publish(name: str, text: str) -> None:
            client.publish(f"{channel_prefix}{name}", text)

        yield publish
        client.close()
