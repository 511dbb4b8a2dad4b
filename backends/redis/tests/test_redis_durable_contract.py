"""The durable storage kit of the core, unchanged, on the Redis storage (0.5 s leases)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rocketman_redis import KeyLayout

from rocketman_core.testing import DurableStorageContract, DurableStorageSpec

#: Short, so that the kit's waits for expiring leases take a few seconds in all.
LEASE = 0.5


class TestRedisDurableStorage(DurableStorageContract):
    """Leases, renew, release, interrupt, retries and a SIGKILLed holder, on a real redis-server."""

    @pytest.fixture
    def durable_storage_spec(
        self, rocketman_redis_server: Any,
        redis_delete_namespace: Callable[[redis.Redis, KeyLayout], None],
    ) -> Iterator[DurableStorageSpec]:
        """RedisStorage on a namespace of its own; its keys are deleted afterwards."""
        namespace = f"test-durable-{uuid.uuid4().hex[:12]}"
        yield DurableStorageSpec(
            "rocketman_redis:RedisStorage",
            {"url": rocketman_redis_server.url, "namespace": namespace, "lease": LEASE},
            lease=LEASE,
        )
        with redis.Redis.from_url(rocketman_redis_server.url) as client:
            redis_delete_namespace(client, KeyLayout(namespace))
