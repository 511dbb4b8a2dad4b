"""The thread executor: the executor conformance kit, and what only threads promise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from rocketman_threads import ThreadExecutor, register_executors

from rocketman_core import Executor
from rocketman_core.testing import ExecutorContract


class TestThreadExecutor(ExecutorContract):
    """Every promise of the Executor contract, on the thread executor."""

    @pytest.fixture
    def executor(self) -> Executor:
        return ThreadExecutor()


@pytest.fixture
def thread_executor() -> Iterator[ThreadExecutor]:
    executor = ThreadExecutor(name="rocketman-test-worker")
    yield executor
    executor.stop(timeout=5)


def test_workers_are_named_daemon_threads(thread_executor: ThreadExecutor) -> None:
    """Workers are daemon threads named ``<name>-<n>``, so debuggers and logs show them."""
    seen: list[threading.Thread] = []
    barrier = threading.Barrier(3, timeout=5)

    def worker(stopping: threading.Event) -> None:
        seen.append(threading.current_thread())
        barrier.wait()
        stopping.wait()

    thread_executor.start(worker, 2)
    barrier.wait()
    assert sorted(t.name for t in seen) == ["rocketman-test-worker-1", "rocketman-test-worker-2"]
    assert all(t.daemon for t in seen)


def test_a_stopped_executor_can_start_again(thread_executor: ThreadExecutor) -> None:
    """After a stop that returned True, start runs a new set of workers with a fresh event."""
    events: list[threading.Event] = []
    started = threading.Semaphore(0)

    def worker(stopping: threading.Event) -> None:
        events.append(stopping)
        started.release()
        stopping.wait()

    thread_executor.start(worker, 1)
    assert started.acquire(timeout=5)
    assert thread_executor.stop(timeout=5) is True
    thread_executor.start(worker, 1)
    assert started.acquire(timeout=5)
    assert len(events) == 2 and events[0].is_set() and not events[1].is_set()


def test_the_plugin_registers_the_thread_executor_through_register_executors() -> None:
    """The entry-point module's ``register_executors`` hook provides ``threads``."""
    registered: dict[str, Any] = {}
    register_executors(lambda name, factory, **kwargs: registered.__setitem__(name, factory))
    assert list(registered) == ["threads"]
    assert isinstance(registered["threads"](name="pool"), ThreadExecutor)


class TestThreadExecutorOnUvloop(ExecutorContract):
    """The same promises with ``loop="uvloop"``: async consumers run on uvloop's loop."""

    @pytest.fixture
    def executor(self) -> Executor:
        return ThreadExecutor(loop="uvloop")

    def executor_source(self, executor: Executor) -> str:
        return "from rocketman_threads import ThreadExecutor\nexecutor = ThreadExecutor(loop='uvloop')"


pytest_plugins = ["pytester"]

BROKEN_LOOPS = '''
import asyncio

import pytest
from rocketman_threads import ThreadExecutor

from rocketman_core.testing import ExecutorContract


class OneLoop(ThreadExecutor):
    """Hands out the same loop every time: two runtimes would share it."""

    _loop = None

    def new_event_loop(self):
        if OneLoop._loop is None:
            OneLoop._loop = asyncio.new_event_loop()
        return OneLoop._loop


class ClosedLoop(ThreadExecutor):
    """Hands out a loop it closed already."""

    def new_event_loop(self):
        loop = asyncio.new_event_loop()
        loop.close()
        return loop


class TestOneLoop(ExecutorContract):
    settle_timeout = 2.0

    @pytest.fixture
    def executor(self):
        return OneLoop()


class TestClosedLoop(ExecutorContract):
    settle_timeout = 2.0

    @pytest.fixture
    def executor(self):
        return ClosedLoop()
'''


def test_the_kit_fails_an_executor_whose_new_event_loop_is_broken(pytester: pytest.Pytester) -> None:
    """A loop handed out twice, or closed already: the kit's two async tests fail, and only they.

    The one loop is closed by the first test, so the runtime's test meets a
    closed loop too.
    """
    pytester.makepyfile(test_broken_loops=BROKEN_LOOPS)
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:asyncio",
                                 "-k", "new_event_loop or async_consumers")
    failed = sorted(report.nodeid.split("::", 1)[1] for report in reprec.getfailures())
    assert failed == [
        "TestClosedLoop::test_a_runtime_on_this_executor_runs_async_consumers",
        "TestClosedLoop::test_new_event_loop_makes_a_fresh_loop_that_runs_coroutines_fed_from_another_thread",
        "TestOneLoop::test_a_runtime_on_this_executor_runs_async_consumers",
        "TestOneLoop::test_new_event_loop_makes_a_fresh_loop_that_runs_coroutines_fed_from_another_thread",
    ], failed
