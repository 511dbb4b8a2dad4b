"""rocketman-relay-redis: Redis PUBLISH becomes rocketman events, ``relays=["redis"]``.

A plugin of rocketman, found through the entry point ``relay-redis`` in the
group ``rocketman`` (the name ``redis`` belongs to the Redis storage's
distribution). It registers the relay ``redis``, selected by name or by a
``redis://``, ``rediss://`` or ``unix://`` URL. Importing this module does not
import ``redis``: the relay imports it when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rocketman_core import hookimpl

if TYPE_CHECKING:
    from ._connection import CLIENT_NAME
    from ._messages import DROP_REASONS
    from ._options import DEFAULT_MAX_BYTES, DEFAULT_URL, URL_ENV
    from ._relay import STATS_KEYS, THREAD_NAME, RedisRelay

# Every process discovers the plugins; only one that selects this relay
# should pay for its modules, so the public names are imported on first use.
_LAZY = {
    "CLIENT_NAME": "._connection",
    "DROP_REASONS": "._messages",
    "DEFAULT_MAX_BYTES": "._options",
    "DEFAULT_URL": "._options",
    "URL_ENV": "._options",
    "STATS_KEYS": "._relay",
    "THREAD_NAME": "._relay",
    "RedisRelay": "._relay",
}

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
    register("redis", _build, schemes=("rediss", "unix"))


def _build(**options: Any) -> RedisRelay:
    from ._relay import RedisRelay

    return RedisRelay(**options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
