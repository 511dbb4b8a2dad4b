"""rocketman-redis: the durable Redis storage, ``storage="redis"``.

A plugin of rocketman, found through the entry point ``redis`` in the group
``rocketman``. It registers the storage ``redis`` and the URL schemes
``redis://``, ``rediss://`` (TLS) and ``unix://``. Importing this module does
not import redis-py: that happens when a storage is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rocketman_core import hookimpl

from ._errors import StorageError, StorageUnavailable

if TYPE_CHECKING:
    from ._layout import KeyLayout
    from ._storage import RedisStorage

__all__ = ["KeyLayout", "RedisStorage", "StorageError", "StorageUnavailable", "register_storages"]

#: The options the factory takes (``storage_options`` or a URL's query string).
OPTIONS = ("url", "client", "namespace", "lease", "connect_timeout", "socket_timeout",
           "park_limit", "park_max_age")


def __getattr__(name: str) -> Any:
    # RedisStorage imports redis-py: only when someone asks for it. Every
    # process imports this module to discover plugins; it stays cheap.
    if name == "RedisStorage":
        from ._storage import RedisStorage

        return RedisStorage
    if name == "KeyLayout":
        from ._layout import KeyLayout

        return KeyLayout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_storage(**options: Any) -> RedisStorage:
    """Build a :class:`RedisStorage` from configuration options (strings from a URL work).

    Raises ``TypeError`` naming every option it does not know.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for the redis storage; it takes {', '.join(OPTIONS)}"
        )
    from ._storage import RedisStorage

    return RedisStorage(**options)


@hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``redis``, selected also by ``rediss://`` and ``unix://`` URLs."""
    # The URL as written: redis-py takes parameters of its own in it
    # (?ssl_cert_reqs=none, ?client_name=...), which the storage passes
    # through, checking that each is one redis-py knows.
    register("redis", build_storage, schemes=("rediss", "unix"), raw_url=True)
