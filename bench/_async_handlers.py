"""The handlers of the async section: awaiting I/O, sleeping a thread, or trivial, each counted by a tally.

Built by :func:`handler` for the section's in-process runtime (memory) and,
through :mod:`bench._async_consumer`, for the worker process (Redis), so that
both run the very same code. A handler that waits calls ``tally.begin()`` as
it starts and ``tally()`` as it ends: its window runs from the first start to
the last end, the span in which the in-flight bound is what limits the rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ._tally import Tally

__all__ = ["KINDS", "SLEEP", "SUBSCRIPTION", "handler"]

#: The subscription of every handler here (one kind per process or runtime).
SUBSCRIPTION = "bench.async"
#: Seconds each waiting handler waits: a round trip to a slow service.
SLEEP = 0.05
#: ``async-sleep``: ``await asyncio.sleep(SLEEP)``; ``sync-sleep``: ``time.sleep(SLEEP)`` on its
#: worker thread; ``async``: an async def that only counts (the trivial handler).
KINDS = ("async-sleep", "sync-sleep", "async")


def handler(kind: str, tally: Tally) -> Callable[[Any], Any]:
    """The consumer of ``kind`` (one of :data:`KINDS`), counting with ``tally``."""
    if kind == "async-sleep":
        async def waits(payload: Any) -> None:
            tally.begin()
            await asyncio.sleep(SLEEP)
            tally()

        return waits
    if kind == "sync-sleep":
        def sleeps(payload: Any) -> None:
            tally.begin()
            time.sleep(SLEEP)
            tally()

        return sleeps
    if kind == "async":
        async def counts(payload: Any) -> None:
            tally()

        return counts
    raise ValueError(f"unknown handler kind {kind!r}; choose from {', '.join(KINDS)}")
