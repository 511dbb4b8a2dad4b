"""rocketman-threads: the worker thread pool, ``executor="threads"``.

A plugin of rocketman, found through the entry point ``threads`` in the group
``rocketman``. It needs only pluggy: an executor runs a callable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._executor import ThreadExecutor

__all__ = ["ThreadExecutor", "register_executors"]

hookimpl = pluggy.HookimplMarker("rocketman")


@hookimpl
def register_executors(register: Any) -> None:
    """Provide the executor ``threads``."""
    register("threads", _build)


def _build(**options: Any) -> ThreadExecutor:
    # Imported here, not at the top: discovery stays cheap (see rocketman_memory).
    from ._executor import ThreadExecutor

    return ThreadExecutor(**options)


def __getattr__(name: str) -> Any:
    if name == "ThreadExecutor":
        from ._executor import ThreadExecutor

        return ThreadExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
