"""The storage conformance kit of the core, unchanged, on the Redis storage (two handles share one namespace)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from rocketman_redis import RedisStorage

from rocketman_core import Storage
from rocketman_core.testing import StorageContract


class TestRedisStorageContract(StorageContract):
    """Every promise of the Storage contract, on a real redis-server."""

    @pytest.fixture
    def storage(self, redis_storage_factory: Callable[..., RedisStorage]) -> Iterator[Storage]:
        yield redis_storage_factory()

    @pytest.fixture
    def other_storage(self, storage: RedisStorage,
                      redis_storage_factory: Callable[..., RedisStorage]) -> Storage:
        """Another connection on the same namespace, as another process has it."""
        return redis_storage_factory(namespace=storage.keys.namespace)
