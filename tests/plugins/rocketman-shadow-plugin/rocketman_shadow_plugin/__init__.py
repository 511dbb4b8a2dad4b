"""A test plugin that registers the storage ``sample``, which rocketman-sample-plugin provides too.

Two distributions claiming one backend name is what the core must report
rather than let one silently shadow the other.
"""

from __future__ import annotations

from typing import Any

from rocketman_memory import MemoryStorage

import rocketman_core

__all__ = ["ShadowStorage", "register_storages"]


class ShadowStorage(MemoryStorage):
    """The memory storage, under the name another plugin uses."""


@rocketman_core.hookimpl
def register_storages(register: Any) -> None:
    """Provide the storages ``sample`` (a clash) and ``shadow``."""
    register("sample", ShadowStorage)
    register("shadow", ShadowStorage)
