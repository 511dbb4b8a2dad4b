"""The storage conformance kit of the core, unchanged, on the Redis storage."""

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
