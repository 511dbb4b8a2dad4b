"""The executor conformance kit: the promises of :class:`rocketman_core.Executor`, as tests.

An executor runs it by subclassing :class:`ExecutorContract` in one of its
test modules and providing an ``executor`` fixture that returns an unstarted
executor::

    class TestMyExecutor(ExecutorContract):
        @pytest.fixture
        def executor(self) -> Executor:
            return MyExecutor()
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from .._backends import EventLoops
from .._contracts import Executor
from ._deadlines import wait_until

__all__ = ["ExecutorContract"]


def _wait_for_stop(stopping: threading.Event) -> None:
    """A well-behaved worker with nothing to do: it returns once asked to stop."""
    stopping.wait()


class ExecutorContract:
    """Tests of the :class:`rocketman_core.Executor` promises; subclass it and provide ``executor``.

    The promises about background workers apply to executors whose
    ``synchronous`` is False. A synchronous executor (the core's ``inline``)
    runs nothing in the background, so for it those tests check that
    instead: ``start`` starts no worker and ``stop`` returns True.
    """

    #: How long a worker may take to start, or to return once asked to stop.
    settle_timeout: float = 5.0
    #: How much longer than its ``timeout`` a ``stop`` may take.
    timing_tolerance: float = 0.5
    #: How long a Python process that started the executor may take to exit.
    exit_within: float = 10.0

    @pytest.fixture
    def executor(self) -> Executor:
        """An unstarted executor: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define an `executor` fixture "
                    "returning an unstarted executor")

    @pytest.fixture
    def release(self) -> Iterator[threading.Event]:
        """Set at teardown, so that workers that ignore ``stopping`` end anyway."""
        event = threading.Event()
        yield event
        event.set()

    @pytest.fixture
    def stopped_afterwards(self, executor: Executor, release: threading.Event) -> Iterator[Executor]:
        """The executor, stopped after the test whatever happened in it."""
        yield executor
        release.set()
        executor.stop(timeout=self.settle_timeout)

    def _runs_in_background(self, executor: Executor) -> bool:
        """Whether the background promises apply; for a synchronous one, check its own."""
        if not executor.synchronous:
            return True
        calls: list[threading.Event] = []
        before = set(threading.enumerate())
        executor.start(calls.append, 3)
        assert calls == [], "a synchronous executor ran a worker from start()"
        assert set(threading.enumerate()) <= before, "a synchronous executor started a thread"
        assert executor.stop(timeout=1) is True
        return False

    def test_synchronous_is_a_bool(self, executor: Executor) -> None:
        """``synchronous`` is a bool the core reads to choose between inline and workers."""
        assert isinstance(executor.synchronous, bool)

    def test_start_runs_the_workers_concurrently(self, stopped_afterwards: Executor) -> None:
        """``start(worker, 3)`` runs 3 workers at the same time, each with a stopping event."""
        executor = stopped_afterwards
        if not self._runs_in_background(executor):
            return
        barrier = threading.Barrier(3, timeout=self.settle_timeout)
        events: list[threading.Event] = []
        met: list[bool] = []
        lock = threading.Lock()

        def worker(stopping: threading.Event) -> None:
            with lock:
                events.append(stopping)
            barrier.wait()  # passes only when all 3 run at once
            with lock:
                met.append(True)
            stopping.wait()

        executor.start(worker, 3)
        wait_until(lambda: len(met) == 3, self.settle_timeout,
                   f"only {len(met)} of 3 workers ran concurrently")
        assert all(isinstance(event, threading.Event) for event in events)
        assert not any(event.is_set() for event in events), "stopping was set before stop()"

    def test_stop_sets_stopping_and_returns_true_once_workers_returned(
        self, stopped_afterwards: Executor
    ) -> None:
        """``stop`` sets each worker's event and returns True when every worker returned."""
        executor = stopped_afterwards
        if not self._runs_in_background(executor):
            return
        events: list[threading.Event] = []
        returned: list[bool] = []
        lock = threading.Lock()

        def worker(stopping: threading.Event) -> None:
            with lock:
                events.append(stopping)
            stopping.wait()
            time.sleep(0.05)  # a worker finishes its batch before it returns
            with lock:
                returned.append(True)

        executor.start(worker, 3)
        wait_until(lambda: len(events) == 3, self.settle_timeout, "the 3 workers did not start")
        assert executor.stop(timeout=self.settle_timeout) is True
        assert all(event.is_set() for event in events)
        assert len(returned) == 3, "stop() returned True before every worker had returned"

    def test_stop_returns_false_at_its_timeout_when_a_worker_ignores_it(
        self, stopped_afterwards: Executor, release: threading.Event
    ) -> None:
        """A worker that ignores stopping makes ``stop(timeout)`` return False, on time."""
        executor = stopped_afterwards
        if not self._runs_in_background(executor):
            return
        started = threading.Event()

        def stubborn(stopping: threading.Event) -> None:
            started.set()
            release.wait()

        executor.start(stubborn, 1)
        assert started.wait(self.settle_timeout), "the worker did not start"
        timeout = 0.3
        began = time.monotonic()
        assert executor.stop(timeout=timeout) is False
        took = time.monotonic() - began
        assert took <= timeout + self.timing_tolerance, f"stop({timeout}) took {took:.3f}s"
        release.set()
        assert executor.stop(timeout=self.settle_timeout) is True, (
            "stop() did not report True once the stubborn worker returned")

    def test_stop_is_idempotent(self, stopped_afterwards: Executor) -> None:
        """Calling stop again, or on an executor never started, is harmless and returns True."""
        executor = stopped_afterwards
        assert executor.stop(timeout=1) is True, "stop() on an unstarted executor"
        if not self._runs_in_background(executor):
            assert executor.stop(timeout=1) is True
            return
        executor.start(_wait_for_stop, 2)
        assert executor.stop(timeout=self.settle_timeout) is True
        assert executor.stop(timeout=self.settle_timeout) is True
        assert executor.stop() is True

    def test_start_on_a_running_executor_raises(self, stopped_afterwards: Executor) -> None:
        """Starting a started executor is an error, and leaves the running workers alone."""
        executor = stopped_afterwards
        if not self._runs_in_background(executor):
            return
        first = threading.Event()

        def worker(stopping: threading.Event) -> None:
            first.set()
            stopping.wait()

        executor.start(worker, 1)
        assert first.wait(self.settle_timeout), "the worker did not start"
        second: list[threading.Event] = []
        with pytest.raises(Exception):  # noqa: B017 - the contract names no class
            executor.start(second.append, 1)
        assert executor.stop(timeout=self.settle_timeout) is True
        assert second == [], "the second start() ran its worker"

    def test_a_worker_that_raises_is_logged_and_the_process_goes_on(
        self, stopped_afterwards: Executor, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception escaping a worker is logged (logger ``rocketman...``), nothing crashes."""
        executor = stopped_afterwards
        if not self._runs_in_background(executor):
            return
        caplog.set_level(logging.ERROR, logger="rocketman")
        crash = RuntimeError("a worker crashed on purpose")
        arrivals = iter(range(2))
        lock = threading.Lock()
        survivor_returned = threading.Event()

        def worker(stopping: threading.Event) -> None:
            with lock:
                first = next(arrivals) == 0
            if not first:
                raise crash
            stopping.wait()
            survivor_returned.set()

        executor.start(worker, 2)

        def logged() -> bool:
            return any(record.name.startswith("rocketman") and (
                (record.exc_info is not None and record.exc_info[1] is crash)
                or str(crash) in record.getMessage()) for record in list(caplog.records))

        wait_until(logged, self.settle_timeout, "the worker's exception was not logged at "
                   f"ERROR by a `rocketman.*` logger; records: {caplog.records}")
        assert executor.stop(timeout=self.settle_timeout) is True
        assert survivor_returned.is_set(), "the other worker did not run on to its stop"

    def executor_source(self, executor: Executor) -> str:
        """Python code that builds the executor in a fresh interpreter, as ``executor``.

        By default the executor's class is imported and called without
        arguments; override it for an executor that needs some.
        """
        cls = type(executor)
        return f"from {cls.__module__} import {cls.__qualname__} as Executor\nexecutor = Executor()"

    def test_workers_do_not_keep_the_interpreter_alive(self, executor: Executor) -> None:
        """A program whose worker never returns still exits when its main thread ends."""
        script = self.executor_source(executor) + "\n" + textwrap.dedent("""
            import threading
            started = threading.Event()

            def never_returns(stopping):
                started.set()
                threading.Event().wait()

            executor.start(never_returns, 2)
            if not executor.synchronous and not started.wait(5):
                raise SystemExit("the worker did not start")
            print("started", flush=True)
        """)
        began = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                  text=True, timeout=self.exit_within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the program was still running {self.exit_within}s after its end: "
                        "workers keep the interpreter alive (use daemon threads)")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "started", done.stdout + done.stderr
        took = time.monotonic() - began
        assert took < self.exit_within, f"the program took {took:.1f}s to exit"

    def test_new_event_loop_makes_a_fresh_loop_that_runs_coroutines_fed_from_another_thread(
            self, executor: Executor) -> None:
        """Optional ``new_event_loop()``: a new loop each call, not running, that the core can run.

        The core runs it on a thread of its own and feeds it with
        ``call_soon_threadsafe`` from the workers.
        """
        import asyncio

        if not isinstance(executor, EventLoops):
            pytest.skip("the executor has no new_event_loop(): the core makes asyncio loops")
        loop, other = executor.new_event_loop(), executor.new_event_loop()
        try:
            assert loop is not other, "new_event_loop() returned the same loop twice"
            assert not loop.is_running() and not loop.is_closed()
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            results: list[int] = []

            async def work(n: int) -> None:
                await asyncio.sleep(0.01)
                results.append(n)

            def start(n: int) -> None:
                loop.create_task(work(n))

            for n in range(3):
                loop.call_soon_threadsafe(start, n)
            wait_until(lambda: len(results) == 3, self.settle_timeout,
                       f"the loop ran {len(results)} of 3 coroutines fed from another thread")
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.settle_timeout)
        finally:
            loop.close()
            other.close()

    def test_a_runtime_on_this_executor_runs_async_consumers(self, executor: Executor) -> None:
        """Any executor serves ``async def`` consumers: on its loop when it makes one, else asyncio's."""
        import asyncio

        from .._config import Settings
        from .._runtime import Rocketman

        app = Rocketman()
        # The default storage: the one that comes with the core.
        app.configure(storage=Settings().storage, executor=executor, latency=0.1)
        loops: list[type] = []

        @app.on_event("kit.async", name="kit.async")
        async def consumer(payload: int) -> None:
            await asyncio.sleep(0.01)
            loops.append(type(asyncio.get_running_loop()))

        try:
            app.emit_many([("kit.async", n) for n in range(5)])
            assert app.drain(timeout=self.settle_timeout)
            wait_until(lambda: len(loops) == 5, self.settle_timeout,
                       f"{len(loops)} of 5 async consumers ran")
        finally:
            app.shutdown(timeout=self.settle_timeout)
        if isinstance(executor, EventLoops) and not executor.synchronous:
            made = executor.new_event_loop()
            made.close()
            assert loops[0] is type(made), (
                f"async consumers ran on a {loops[0].__name__}, not on the executor's "
                f"{type(made).__name__}")
