"""rocketman's relay conformance kit, run against the Redis relay and a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from rocketman_relay_redis import RedisRelay
from rocketman_relay_redis.testing import RedisServer

from rocketman_core.testing import RelayRestartContract


class TestRedisRelayContract(RelayRestartContract):
    """The promises of ``rocketman_core.Relay``, kept by ``RedisRelay``, restarts included.

    Each test has a redis-server of its own (it may be stopped and restarted)
    and listens under a prefix of its own (``<prefix>rocketman.contract``),
    stripped by the relay.
    """

    @pytest.fixture
    def own_redis_server(self) -> Iterator[RedisServer]:
        with RedisServer(appendonly=False) as server:
            yield server

    @pytest.fixture
    def channel_prefix(self) -> str:
        return f"kit-{uuid.uuid4().hex[:8]}."

    @pytest.fixture
    def relay(self, own_redis_server: RedisServer, channel_prefix: str) -> RedisRelay:
        # Quick reconnection, so that the outage tests take a test's time.
        return RedisRelay(url=own_redis_server.url, prefix=channel_prefix, latency=0.1,
                          socket_timeout=1.0, backoff=0.05, backoff_max=0.5)

    @pytest.fixture
    def publish(
        self, own_redis_server: RedisServer, channel_prefix: str
    ) -> Iterator[Callable[[str, str], None]]:
        # redis-py reconnects on the next command after a restart.
        client = redis.Redis.from_url(own_redis_server.url, socket_timeout=2)

        def publish(name: str, text: str) -> None:
            client.publish(f"{channel_prefix}{name}", text)

        yield publish
        client.close()

    @pytest.fixture
    def restart_server(self, own_redis_server: RedisServer) -> Callable[[], None]:
        return own_redis_server.restart

    @pytest.fixture
    def stop_server(self, own_redis_server: RedisServer) -> Callable[[], None]:
        return own_redis_server.stop
