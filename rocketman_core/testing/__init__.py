"""Test support for rocketman and for authors of its plugins.

* :class:`RedisServer`: a real ``redis-server`` on a free port, for tests.
"""

from __future__ import annotations

from ._redis_server import RedisServer, RedisServerMissing, free_port

__all__ = ["RedisServer", "RedisServerMissing", "free_port"]
