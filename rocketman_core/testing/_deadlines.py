"""Waiting on a condition with a deadline: how the kits synchronise, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(condition: Callable[[], bool], timeout: float, failure: str,
               interval: float = 0.01) -> None:
    """Return as soon as ``condition()`` is true; fail with ``failure`` after ``timeout`` seconds.

    :param condition: checked at once, then every ``interval`` seconds.
    :param timeout: the deadline, in seconds from now.
    :param failure: the assertion message, saying which promise was broken.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{failure} (waited {timeout}s)")
        time.sleep(interval)
