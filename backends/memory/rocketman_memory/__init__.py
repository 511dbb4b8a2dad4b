"""rocketman-memory: the in-process storage, ``storage="memory"``.

A plugin of rocketman, found through the entry point ``memory`` in the group
``rocketman``. It needs only pluggy: a storage moves opaque bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._storage import MemoryStorage, QueueFull, StorageClosed

__all__ = ["MemoryStorage", "QueueFull", "StorageClosed", "register_storages"]

hookimpl = pluggy.HookimplMarker("rocketman")


@hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``memory``."""
    register("memory", _build)


def _build(**options: Any) -> MemoryStorage:
    # Imported here, not at the top: every process discovers the plugins,
    # and only the ones that select a backend should pay for its module.
    from ._storage import MemoryStorage

    return MemoryStorage(**options)


def __getattr__(name: str) -> Any:
    if name in ("MemoryStorage", "QueueFull", "StorageClosed"):
        from . import _storage

        return getattr(_storage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
