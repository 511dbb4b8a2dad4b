"""Registering consumers costs the same per consumer, however many there are (hardening 24).

Time is noisy on a shared machine, so these tests count work instead: the
Python lines the registering thread runs (``sys.settrace``) to register N
consumers, then 2N. Linear registration doubles; the quadratic one it
replaced (the ``#2``, ``#3``... search for namesakes, every subscription
rebuilt and re-registered on each addition to running workers) quadruples.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from rocketman_core import Rocketman

COUNT = 400


def _lines_to_register(count: int, register: Callable[[Rocketman, int], None],
                       runtime: Rocketman) -> int:
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        for number in range(count):
            register(runtime, number)
    finally:
        sys.settrace(None)
    return lines


def _named(runtime: Rocketman, number: int) -> None:
    def consumer(payload: Any) -> None:
        pass
    runtime.on_event(f"scale.{number}", name=f"scale-{number}")(consumer)


def _namesake(runtime: Rocketman, number: int) -> None:
    def consumer(payload: Any) -> None:  # the same module:qualname each time: #2, #3...
        pass
    runtime.on_event(f"scale.{number}")(consumer)


def _growth(make: Callable[[], Rocketman], register: Callable[[Rocketman, int], None]) -> float:
    costs = []
    for count in (COUNT, 2 * COUNT):
        runtime = make()
        try:
            costs.append(_lines_to_register(count, register, runtime))
        finally:
            runtime.shutdown(timeout=5)
    return costs[1] / costs[0]


def _idle() -> Rocketman:
    runtime = Rocketman()
    runtime.configure(worker_count=2, latency=0.2)
    return runtime


def _running(storage: str = "memory") -> Callable[[], Rocketman]:
    def make() -> Rocketman:
        runtime = Rocketman()
        runtime.configure(storage=storage, worker_count=2, latency=0.2)
        started = threading.Event()
        runtime.on_event("scale.warm", name="scale-warm")(lambda payload: started.set())
        runtime.emit("scale.warm")  # the workers run: each addition is hosted while they do
        assert started.wait(5)
        return runtime
    return make


@pytest.mark.parametrize("register", [_named, _namesake], ids=["named", "namesakes"])
def test_registering_before_the_workers_start_is_linear(register: Callable[[Rocketman, int], None]) -> None:
    growth = _growth(_idle, register)
    assert growth < 2.5, f"twice the consumers cost {growth:.1f} times the work"


def test_registering_on_running_workers_is_linear() -> None:
    growth = _growth(_running(), _named)
    assert growth < 2.5, f"twice the consumers cost {growth:.1f} times the work"


def test_registering_on_running_redis_workers_is_linear(rocketman_redis_server: Any) -> None:
    import uuid

    url = f"{rocketman_redis_server.url}?namespace=scale-{uuid.uuid4().hex[:8]}"
    growth = _growth(_running(url), _named)
    assert growth < 2.5, f"twice the consumers cost {growth:.1f} times the work"


def test_starting_redis_workers_with_many_consumers_is_linear(rocketman_redis_server: Any) -> None:
    """The first emit registers every subscription: in batches, not one table-sized call each."""
    import uuid

    def lines_to_start(count: int) -> int:
        runtime = Rocketman()
        runtime.configure(storage=f"{rocketman_redis_server.url}?namespace=scale-{uuid.uuid4().hex[:8]}",
                          worker_count=1, latency=0.2)
        for number in range(count):
            _named(runtime, number)
        try:
            return _lines_to_register(1, lambda runtime, _: runtime.emit("scale.0"), runtime)
        finally:
            runtime.shutdown(timeout=5)

    small, large = lines_to_start(COUNT), lines_to_start(2 * COUNT)
    assert large / small < 2.5, f"twice the consumers cost {large / small:.1f} times the work to start"


def test_consumers_added_to_running_workers_in_a_burst_are_all_handled() -> None:
    """The set the workers reserve for changes once the burst pauses: none is left out."""
    runtime = _running()()
    seen: set[int] = set()
    lock = threading.Lock()
    try:
        for number in range(300):
            def consumer(payload: Any, number: int = number) -> None:
                with lock:
                    seen.add(number)
            runtime.on_event(f"burst.{number}", name=f"burst-{number}")(consumer)
        for number in range(300):
            runtime.emit(f"burst.{number}")
        assert runtime.drain(timeout=10)
        assert seen == set(range(300))
    finally:
        runtime.shutdown(timeout=5)
