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
