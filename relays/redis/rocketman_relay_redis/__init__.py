"""rocketman-relay-redis: Redis PUBLISH becomes rocketman events, ``relays=["redis"]``.

A plugin of rocketman, found through the entry point ``relay-redis`` in the
group ``rocketman`` (the name ``redis`` belongs to the Redis storage's
distribution). It registers the relay ``redis``, selected by name or by a
``redis://``, ``rediss://`` or ``unix://`` URL. Importing this module does not
import ``redis``: the relay imports it when it starts.
"""

from __future__ import annotations

from typing import Any

from rocketman_core import hookimpl

from ._connection import CLIENT_NAME
from ._messages import DROP_REASONS
from ._options import DEFAULT_MAX_BYTES, DEFAULT_URL, URL_ENV
from ._relay import STATS_KEYS, THREAD_NAME, RedisRelay

__all__ = [
    "CLIENT_NAME",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_URL",
    "DROP_REASONS",
    "STATS_KEYS",
    "THREAD_NAME",
    "URL_ENV",
    "RedisRelay",
    "register_relays",
]


@hookimpl
def register_relays(register: Any) -> None:
    """Provide the relay ``redis`` (also selected by ``rediss://`` and ``unix://`` URLs)."""
    register("redis", RedisRelay, schemes=("rediss", "unix"))
