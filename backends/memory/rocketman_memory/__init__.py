"""rocketman-memory: the in-process storage, ``storage="memory"``.

A plugin of rocketman, found through the entry point ``memory`` in the group
``rocketman``. It needs only pluggy: a storage moves opaque bytes.
"""

from __future__ import annotations

from typing import Any

import pluggy

from ._storage import MemoryStorage, QueueFull

__all__ = ["MemoryStorage", "QueueFull", "register_storages"]

hookimpl = pluggy.HookimplMarker("rocketman")


@hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``memory``."""
    register("memory", MemoryStorage)
