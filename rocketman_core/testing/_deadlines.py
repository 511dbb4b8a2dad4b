"""Waiting on a condition with a deadline: how tests synchronise, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(condition: Callable[[], bool], timeout: float, message: str | Callable[[], str],
               *, interval: float = 0.01) -> None:
    """Return as soon as ``condition()`` is true; fail with ``message`` after ``timeout`` seconds.

    :param condition: checked at once, then every ``interval`` seconds, from
        the caller's thread; it must not block.
    :param timeout: the deadline, in seconds from now. ``condition`` is
        checked once more at the deadline, so a condition that came true
        while the last interval passed is not a failure.
    :param message: the assertion message, saying which promise was broken;
        or a callable that makes it at the deadline (to show the state then,
        a log's tail, counters).
    :raises AssertionError: ``"<message> (waited <timeout>s)"``.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout}s)")
        time.sleep(interval)
