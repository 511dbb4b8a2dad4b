"""An ``emit`` for relays under test that records what it is given."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["EmitRecorder"]


class EmitRecorder:
    """A callable to pass as a relay's ``emit``: records each ``(name, payload)``, in order.

    Thread-safe: the relay calls it from its thread while the test reads it
    from its own. It also records which threads called it, so that a test
    can check that emit came from the relay's thread, not the caller's::

        emitted = EmitRecorder()
        relay.start(emitted)
        publish("orders.paid", '{"id": 7}')
        assert emitted.wait_for_count(1) == [("orders.paid", {"id": 7})]
    """

    def __init__(self) -> None:
        self._calls: list[tuple[str, Any]] = []
        self._threads: set[int] = set()
        self._changed = threading.Condition()

    def __call__(self, name: str, payload: Any) -> None:
        with self._changed:
            self._threads.add(threading.get_ident())
            self._record(name, payload)
            self._changed.notify_all()

    def _record(self, name: str, payload: Any) -> None:
        """Keep one call; called with the lock held. Subclasses may sort calls apart."""
        self._calls.append((name, payload))

    @property
    def calls(self) -> list[tuple[str, Any]]:
        """The calls so far, in order (a copy)."""
        with self._changed:
            return list(self._calls)

    @property
    def threads(self) -> set[int]:
        """The identifiers (``threading.get_ident()``) of the threads that called it."""
        with self._changed:
            return set(self._threads)

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``condition()`` holds; return whether it did.

        ``condition`` runs with the recorder's lock held, at each call: it
        may read :attr:`calls`, and must not block.
        """
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        """The calls, once there are at least ``count``.

        :raises AssertionError: after ``timeout`` seconds, saying how many came.
        """
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._calls) >= count, timeout)
            if not arrived:
                raise AssertionError(f"emit was called {len(self._calls)} times in {timeout}s, "
                                     f"{count} calls were expected: {self._calls[-5:]!r} came last")
            return list(self._calls)
