"""A test plugin whose entry point name, ``sample``, is rocketman-sample-plugin's too.

pluggy would skip the second silently; the core must report it.
"""

from __future__ import annotations

from typing import Any

from rocketman_memory import MemoryStorage

import rocketman_core

__all__ = ["register_storages"]


@rocketman_core.hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``twin``."""
    register("twin", MemoryStorage)
