"""The thread executor: daemon worker threads, stopped by an event."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["ThreadExecutor"]

logger = logging.getLogger("rocketman.threads")


class ThreadExecutor:
    """Runs each worker on its own daemon thread.

    Daemon threads, because the interpreter joins non-daemon threads before
    it runs ``atexit`` handlers: non-daemon workers would keep a program alive
    forever. The core drains and stops them from an ``atexit`` handler.

    :param name: the prefix of the threads' names, as shown by debuggers.
    :param loop: the event loop async consumers run on: ``"asyncio"`` (the
        default) or ``"uvloop"`` (installed apart: ``pip install uvloop``).
    """

    synchronous = False
    LOOPS = ("asyncio", "uvloop")

    def __init__(self, name: str = "rocketman-worker", url: str | None = None,
                 loop: str = "asyncio") -> None:
        if loop not in self.LOOPS:
            raise ValueError(f"loop={loop!r}: the threads executor runs async consumers on "
                             f"{' or '.join(map(repr, self.LOOPS))}")
        if loop == "uvloop":
            try:
                import uvloop  # noqa: F401 - checked here, at configure, not at the first event
            except ImportError:
                raise ValueError("loop='uvloop' needs uvloop: pip install uvloop") from None
        self.name = name
        self.loop = loop
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self, worker: Callable[[threading.Event], None], count: int) -> None:
        """Start ``count`` daemon threads, each running ``worker(stopping)``."""
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError("this executor is already running; stop it first")
        self._stopping = stopping = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(worker, stopping),
                name=f"{self.name}-{number}", daemon=True,
            )
            for number in range(1, count + 1)
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _run(worker: Callable[[threading.Event], None], stopping: threading.Event) -> None:
        crashes = 0
        while True:
            try:
                worker(stopping)
                return
            except BaseException as error:
                # The core's loop handles consumer failures and storage
                # errors itself; what gets here (a KeyboardInterrupt a
                # consumer raised, a bug) must neither vanish nor leave the
                # process with one worker fewer.
                if stopping.is_set():
                    return
                crashes += 1
                logger.error("rocketman worker thread %s stopped on %s; starting it again",
                             threading.current_thread().name, type(error).__name__,
                             exc_info=crashes == 1)
                # A worker that dies at once again would spin: back off, up to 5 s.
                if stopping.wait(min(5.0, 0.05 * 2 ** min(crashes - 1, 7))):
                    return

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the workers to stop; wait up to ``timeout``; return whether all did."""
        self._stopping.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        current = threading.current_thread()
        for thread in self._threads:
            if thread is current:
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        alive = [t for t in self._threads if t.is_alive() and t is not current]
        if not alive:
            self._threads = []
        return not alive

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new loop of the kind chosen by ``loop``, for the core's thread of async consumers."""
        if self.loop == "uvloop":
            import uvloop

            new: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return new
        import asyncio

        return asyncio.new_event_loop()

    def __repr__(self) -> str:
        return f"ThreadExecutor(running={sum(t.is_alive() for t in self._threads)})"
