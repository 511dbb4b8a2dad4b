"""The backends built into the core: the ``inline`` executor, for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._hookspecs import Register, hookimpl

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Dispatches every event in the thread that emits it, synchronously.

    Like the original gem's test pool: when ``emit`` returns, every consumer
    has run, and the first exception a consumer raised is raised to the
    caller of ``emit`` (after the other consumers ran; no retry). The storage
    is not used. For tests and scripts; an application wants ``threads``.
    """

    synchronous = True

    def start(self, worker: Callable[[threading.Event], None], count: int) -> None:
        """Nothing to start: the core never calls this for a synchronous executor."""

    def stop(self, timeout: float | None = None) -> bool:
        """Nothing to stop."""
        return True


@hookimpl
def register_executors(register: Register) -> None:
    register("inline", InlineExecutor)
