"""rocketman-threads: the worker thread pool, ``executor="threads"``.

A plugin of rocketman, found through the entry point ``threads`` in the group
``rocketman``. It needs only pluggy: an executor runs a callable.
"""

from __future__ import annotations

from typing import Any

import pluggy

from ._executor import ThreadExecutor

__all__ = ["ThreadExecutor", "register_executors"]

hookimpl = pluggy.HookimplMarker("rocketman")


@hookimpl
def register_executors(register: Any) -> None:
    """Provide the executor ``threads``."""
    register("threads", ThreadExecutor)
