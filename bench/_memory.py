"""memory storage + threads executor against hand-written thread pools, in this process."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from ._measure import WIDE_RUNS, Config, interleave, median, percentile
from ._pools import Emit, Factory, Handler, deque_pool, queue_pool, thread_pool_executor
from ._report import Row, Target

__all__ = ["EVENT", "countdown", "e2e_rate", "memory_section", "rocketman_factory", "scaling_series"]

EVENT = "bench.event"
WORKER_COUNTS = (1, 2, 5, 10)


class Finish:
    """Set by the handler that sees the last event: when, and an event to wait on."""

    def __init__(self) -> None:
        self.at = 0.0
        self.done = threading.Event()


def countdown(total: int) -> tuple[Handler, Finish]:
    """A trivial handler that notes the time it sees its ``total``-th event.

    ``next()`` on an ``itertools.count`` is atomic under the GIL, so five
    threads count without a lock; the same handler serves every contender.
    """
    tick = itertools.count(1).__next__
    finish = Finish()

    def handler(payload: Any) -> None:
        if tick() == total:
            finish.at = time.perf_counter()
            finish.done.set()

    return handler, finish


class NoopHooks:
    """A plugin implementing the four broadcast hooks, doing nothing: a metrics plugin's floor."""

    def __init__(self) -> None:
        from rocketman_core import hookimpl

        def noop(self: Any, **kwargs: Any) -> None:
            pass

        for name, argnames in (
            ("rocketman_event_emitted", "event"),
            ("rocketman_event_handled", "event, consumer, duration"),
            ("rocketman_event_failed", "event, consumer, error, will_retry"),
            ("rocketman_event_dead_lettered", "event, consumer, reason"),
        ):
            namespace: dict[str, Any] = {}
            exec(f"def {name}({argnames}):\n    pass", namespace)  # pluggy reads the argument names
            setattr(self, name, hookimpl(namespace[name]))


def rocketman_factory(workers: int, **settings: Any) -> Factory:
    """rocketman with the memory storage and ``workers`` threads, started before timing."""

    def start(handler: Handler) -> tuple[Emit, Callable[[], None]]:
        import rocketman_core

        app = rocketman_core.Rocketman()
        if settings.pop("hooks", False):
            app.register_plugin(NoopHooks(), name="bench-noop-hooks")
        app.configure(storage=settings.pop("storage", "memory"), executor="threads",
                      worker_count=workers, latency=1.0, **settings)
        app.on_event(EVENT)(handler)
        app.start()

        def close() -> None:
            app.shutdown(timeout=5)

        return app.emit, close

    return start


def e2e_rate(factory: Factory, total: int) -> float:
    """Events per second from the first emit to the moment the last handler ran."""
    handler, finish = countdown(total)
    emit, close = factory(handler)
    try:
        started = time.perf_counter()
        for number in range(total):
            emit(EVENT, {"n": number})
        if not finish.done.wait(120):
            raise TimeoutError(f"{total} events were not all handled within 120 s")
        return total / (finish.at - started)
    finally:
        close()


def emit_cost_us(factory: Factory, total: int) -> float:
    """Microseconds per ``emit`` call, timing the producer's loop only."""
    handler, _ = countdown(total)
    emit, close = factory(handler)
    try:
        started = time.perf_counter()
        for number in range(total):
            emit(EVENT, {"n": number})
        elapsed = time.perf_counter() - started
        return elapsed / total * 1e6
    finally:
        close()


def latencies_us(factory: Factory, count: int, gap: float) -> list[float]:
    """Emit-to-handler latencies in µs, emitting ``count`` events ``gap`` seconds apart."""
    sent = [0.0] * count
    received = [0.0] * count
    handler_done, finish = countdown(count)

    def handler(payload: Any) -> None:
        received[payload["n"]] = time.perf_counter()
        handler_done(payload)

    emit, close = factory(handler)
    try:
        clock, sleep = time.perf_counter, time.sleep
        start = clock() + 0.01
        for number in range(count):
            delay = start + number * gap - clock()
            if delay > 0:
                sleep(delay)
            sent[number] = clock()
            emit(EVENT, {"n": number})
        if not finish.done.wait(60):
            raise TimeoutError("the latency run did not finish within 60 s")
    finally:
        close()
    return [(r - s) * 1e6 for s, r in zip(sent, received, strict=True)]


def memory_section(config: Config) -> list[Row]:
    """End-to-end throughput, emit cost and light-load latency against the pools."""
    section = "memory + threads"
    rows: list[Row] = []
    total = 100_000
    # WIDE_RUNS even with --quick: the rows report the median and the range,
    # and the end to end spread 0.66x-0.91x of its ceiling in one run.
    runs = max(WIDE_RUNS, config.repeats)
    ours, pool_json, pool_plain, executor, deque_json = interleave(
        runs,
        lambda: e2e_rate(rocketman_factory(5), total),
        lambda: e2e_rate(queue_pool(5), total),
        lambda: e2e_rate(queue_pool(5, encode=False), total),
        lambda: e2e_rate(thread_pool_executor(5), total),
        lambda: e2e_rate(deque_pool(5), total),
    )
    figure = f"end-to-end, 5 workers, {total:,} events"
    counts = {"events": total, "runs": runs}
    rows += [
        Row.paired(section, figure, "events/s", ours, "queue.Queue + JSON, 5 threads", pool_json,
                   Target(">=", 1.0), extra=counts),
        Row.paired(section, figure, "events/s", ours, "queue.Queue, no JSON, 5 threads", pool_plain,
                   extra=counts),
        Row.paired(section, figure, "events/s", ours, "ThreadPoolExecutor(5).submit", executor,
                   extra=counts),
        # The same design without our guarantees: the ceiling.
        Row.paired(section, figure, "events/s", ours, "deque + Condition + JSON, batched", deque_json,
                   Target(">=", 0.8), extra=counts),
    ]

    # The optional accelerated decoder, beside the standard library's (every other row).
    from rocketman_core import _envelope

    def accelerated() -> float:
        _envelope.use_speedups(True)
        try:
            return e2e_rate(rocketman_factory(5), total)
        finally:
            _envelope.use_speedups(False)

    installed = _envelope.use_speedups(True)
    _envelope.use_speedups(False)
    if installed:
        fast, standard = interleave(runs, accelerated, lambda: e2e_rate(rocketman_factory(5), total))
        rows.append(Row.paired(section, figure + ", with rocketman-core[speedups] (msgspec decoding)",
                               "events/s", fast, "rocketman, standard-library JSON (every other row)",
                               standard, extra=counts))

    # What an observer costs: a metrics plugin implementing every broadcast
    # hook, doing nothing (its floor), against no plugin at all.
    plain, hooked = interleave(
        runs,
        lambda: e2e_rate(rocketman_factory(5), total),
        lambda: e2e_rate(rocketman_factory(5, hooks=True), total),
    )
    rows.append(Row.paired(section, figure + ", 4 broadcast hooks implemented as no-ops", "events/s",
                           hooked, "rocketman, no hook implemented", plain, Target(">=", 0.8),
                           extra=counts))

    count = config.pick(50_000, 20_000)
    idle_ours, idle_pool = interleave(
        runs,
        lambda: emit_cost_us(rocketman_factory(0), count),
        lambda: emit_cost_us(queue_pool(0), count),
    )
    busy_ours, busy_pool = interleave(
        runs,
        lambda: emit_cost_us(rocketman_factory(5), total),
        lambda: emit_cost_us(queue_pool(5), total),
    )
    rows += [
        Row.paired(section, "emit cost, no worker running", "µs", idle_ours, "json.dumps + Queue.put",
                   idle_pool, extra={"events": count, "runs": runs}),
        Row.paired(section, "emit cost, 5 workers consuming", "µs", busy_ours, "json.dumps + Queue.put",
                   busy_pool, extra=counts),
    ]

    events, gap = 1000, 0.001
    ours_runs, pool_runs = interleave(
        runs,
        lambda: _latency_pair(rocketman_factory(5), events, gap),
        lambda: _latency_pair(queue_pool(5), events, gap),
    )
    light = f"latency at light load ({events:,} events, 1 ms apart)"
    for index, (quantile, target) in enumerate((("p50", None), ("p99", Target("<=", 1.5)))):
        rows.append(Row.paired(section, f"{light}, {quantile}", "µs", [run[index] for run in ours_runs],
                               "queue.Queue + JSON, 5 threads", [run[index] for run in pool_runs],
                               target, extra={"events": events, "runs": runs}))
    return rows


def _latency_pair(factory: Factory, events: int, gap: float) -> tuple[float, float]:
    """p50 and p99 of one light-load run, in µs."""
    values = latencies_us(factory, events, gap)
    return percentile(values, 0.50), percentile(values, 0.99)


def scaling_series(config: Config) -> dict[str, Any]:
    """Throughput at 1, 2, 5 and 10 workers: rocketman and the queue.Queue + JSON pool, medians of 3 runs."""
    total = config.pick(20_000, 10_000)
    repeats = config.pick(3, 1)
    ours: list[float] = []
    pool: list[float] = []
    for workers in WORKER_COUNTS:
        mine, theirs = interleave(
            repeats,
            lambda w=workers: e2e_rate(rocketman_factory(w), total),  # type: ignore[misc]
            lambda w=workers: e2e_rate(queue_pool(w), total),  # type: ignore[misc]
        )
        ours.append(median(mine))
        pool.append(median(theirs))
    return {"workers": list(WORKER_COUNTS), "rocketman": ours, "queue.Queue + JSON": pool,
            "events": total}
