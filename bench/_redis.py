"""The Redis storage against raw redis-py, a hand-written consumer, dramatiq and rq.

Everything talks to a redis-server of the benchmark's own on a free port
(no append-only file, like a cache-configured Redis), never to the machine's.
Worker processes report through :mod:`bench._tally`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ._measure import Config, child_env, interleave, python, script
from ._report import Row, Target

__all__ = ["redis_section"]

EVENT = "bench.event"
RAW_QUEUE = "raw:queue"
RESULT_KEY = "bench:result"
BATCH = 100
WORKER_COUNTS = (1, 2, 5, 10)


def _envelope(number: int) -> str:
    # What a hand-written producer would push: the name and the payload, as JSON.
    return json.dumps({"name": EVENT, "payload": {"n": number}})


class _Bench:
    """One redis-server, a client, and rocketman's storage URL on it (or why it is unusable)."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.storage = url + "?namespace=bench"
        self.client = redis.Redis.from_url(url)
        self.unavailable = self._probe()

    def _probe(self) -> str | None:
        """None if rocketman's Redis storage works here, else the reason it does not."""
        try:
            app = self.app()
            app.emit(EVENT, {"n": -1})
            queued = app.stats()["queued"]
            app.shutdown(timeout=1)
        except Exception as error:
            return f"{type(error).__name__}: {error}".splitlines()[0][:160]
        finally:
            self.client.flushdb()
        if queued != 1:
            return f"the probe event was not queued (stats say {queued})"
        return None

    def app(self) -> Any:
        """A producer-only rocketman runtime on the Redis storage."""
        import rocketman_core

        app = rocketman_core.Rocketman()
        app.configure(storage=self.storage, worker_count=0)
        return app

    # -- producing ---------------------------------------------------------

    def emit_rate(self, total: int) -> float:
        app = self.app()
        emit = app.emit
        emit(EVENT, {"n": -1})  # connects before timing
        started = time.perf_counter()
        for number in range(total):
            emit(EVENT, {"n": number})
        elapsed = time.perf_counter() - started
        app.shutdown(timeout=1)
        self.client.flushdb()
        return total / elapsed

    def lpush_rate(self, total: int) -> float:
        lpush = self.client.lpush
        started = time.perf_counter()
        for number in range(total):
            lpush(RAW_QUEUE, _envelope(number))
        elapsed = time.perf_counter() - started
        self.client.flushdb()
        return total / elapsed

    def emit_many_rate(self, total: int) -> float:
        app = self.app()
        app.emit(EVENT, {"n": -1})
        started = time.perf_counter()
        for first in range(0, total, BATCH):
            app.emit_many([(EVENT, {"n": n}) for n in range(first, first + BATCH)])
        elapsed = time.perf_counter() - started
        app.shutdown(timeout=1)
        self.client.flushdb()
        return total / elapsed

    def pipelined_rate(self, total: int) -> float:
        started = time.perf_counter()
        for first in range(0, total, BATCH):
            pipe = self.client.pipeline(transaction=False)
            for number in range(first, first + BATCH):
                pipe.lpush(RAW_QUEUE, _envelope(number))
            pipe.execute()
        elapsed = time.perf_counter() - started
        self.client.flushdb()
        return total / elapsed

    # -- end to end: a worker process drains a filled queue ----------------------

    def _process_rate(self, argv: list[str], total: int, fill: Callable[[], None]) -> float:
        """Fill the queue, start the worker process, and time its first to its last handler."""
        self.client.flushdb()
        fill()
        env = child_env(BENCH_TOTAL=str(total), BENCH_REDIS_URL=self.url, BENCH_RESULT_KEY=RESULT_KEY)
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
            try:
                deadline = time.monotonic() + 60 + total / 200
                while (raw := self.client.get(RESULT_KEY)) is None:
                    if process.poll() is not None:
                        log.seek(0)
                        tail = log.read()[-1500:].decode(errors="replace")
                        raise RuntimeError(f"{' '.join(argv[:3])} exited with {process.returncode}:\n{tail}")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{' '.join(argv[:3])} did not handle {total} events in time")
                    time.sleep(0.02)
            finally:
                _stop(process)
        result = json.loads(raw)
        self.client.flushdb()
        return total / float(result["last"] - result["first"])

    def rocketman_rate(self, total: int, threads: int) -> float:
        def fill() -> None:
            app = self.app()
            for first in range(0, total, 1000):
                app.emit_many([(EVENT, {"n": n}) for n in range(first, min(total, first + 1000))])
            app.shutdown(timeout=1)

        argv = [script("rocketman"), "worker", "bench._redis_consumer", "--storage", self.storage,
                "--workers", str(threads)]
        return self._process_rate(argv, total, fill)

    def raw_rate(self, total: int, threads: int) -> float:
        def fill() -> None:
            for first in range(0, total, 1000):
                pipe = self.client.pipeline(transaction=False)
                pipe.lpush(RAW_QUEUE, *[_envelope(n) for n in range(first, min(total, first + 1000))])
                pipe.execute()

        return self._process_rate([python(), "-m", "bench._raw_consumer", str(threads)], total, fill)

    def dramatiq_rate(self, total: int) -> float:
        os.environ["BENCH_REDIS_URL"] = self.url  # read by the actor module at import
        from . import _dramatiq_app

        def fill() -> None:
            for number in range(total):
                _dramatiq_app.bench_event.send({"n": number})

        argv = [script("dramatiq"), "bench._dramatiq_app", "--processes", "1", "--threads", "5"]
        return self._process_rate(argv, total, fill)

    def rq_rate(self, total: int) -> float:
        from rq import Queue

        from ._rq_jobs import bench_job

        def fill() -> None:
            queue = Queue("bench", connection=self.client)
            for number in range(total):
                queue.enqueue(bench_job, {"n": number})

        argv = [script("rq"), "worker", "--burst", "--quiet", "--url", self.url, "bench"]
        return self._process_rate(argv, total, fill)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (dramatiq forks), then SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _optional(measure: Callable[[], float], problems: dict[str, str], name: str) -> float | None:
    """Run a peer's measurement; a peer that cannot run is reported, not fatal."""
    try:
        return measure()
    except Exception as error:
        problems[name] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return None


def redis_section(config: Config, rows: bool = True, scaling: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Rows for emit, emit_many and end-to-end; and the worker-count series for the plot."""
    from rocketman_core.testing import RedisServer

    server = RedisServer(appendonly=False)
    server.start()
    try:
        bench = _Bench(server.url)
        found = _rows(bench, config) if rows else []
        series: dict[str, Any] = _scaling(bench, config) if scaling else {}
        if bench.unavailable:
            series["unavailable"] = bench.unavailable
        return found, series
    finally:
        server.close()


def _rows(bench: _Bench, config: Config) -> list[Row]:
    section = "redis"
    missing = bench.unavailable
    ours_ok = missing is None
    note = f"rocketman's Redis storage is not available: {missing}" if missing else ""
    repeats = config.pick(3, 2)

    def ours(measure: Callable[[], float]) -> Callable[[], float]:
        return measure if ours_ok else (lambda: float("nan"))

    def best(values: list[float]) -> float | None:
        return max(values) if ours_ok else None

    singles = config.pick(3000, 1000)
    emit, lpush = interleave(repeats, ours(lambda: bench.emit_rate(singles)), lambda: bench.lpush_rate(singles))
    many = config.pick(20_000, 5_000)
    emitted_many, pipelined = interleave(
        repeats, ours(lambda: bench.emit_many_rate(many)), lambda: bench.pipelined_rate(many)
    )
    # Each contender drains enough events to take a second or so at its pace.
    ours_total, raw_total = config.pick(30_000, 10_000), config.pick(6_000, 2_000)
    e2e, raw1, raw5 = interleave(
        config.pick(3, 1),
        ours(lambda: bench.rocketman_rate(ours_total, 5)),
        lambda: bench.raw_rate(raw_total, 1),
        lambda: bench.raw_rate(raw_total, 5),
    )
    problems: dict[str, str] = {}
    dramatiq_total = config.pick(3000, 1000)
    dramatiq = _optional(lambda: bench.dramatiq_rate(dramatiq_total), problems, "dramatiq")
    rq_total = config.pick(300, 100)
    rq = _optional(lambda: bench.rq_rate(rq_total), problems, "rq")

    e2e_figure = "end-to-end, 1 worker process of 5 threads"
    counts = {"rocketman_events": ours_total}
    return [
        Row(section, "emit, one at a time", "events/s", best(emit), "redis-py LPUSH", max(lpush),
            Target(">=", 0.9), note=note, extra={"events": singles}),
        Row(section, f"emit_many, batches of {BATCH}", "events/s", best(emitted_many),
            f"redis-py pipeline of {BATCH} LPUSH", max(pipelined), Target(">=", 0.7), note=note,
            extra={"events": many}),
        Row(section, e2e_figure, "events/s", best(e2e), "dramatiq, 1 process of 5 threads", dramatiq,
            Target(">=", 10.0), note=note or problems.get("dramatiq", ""),
            extra={**counts, "baseline_events": dramatiq_total}),
        Row(section, e2e_figure, "events/s", best(e2e), "BLMOVE + LREM consumer, 5 threads", max(raw5),
            Target(">=", 3.0), note=note, extra={**counts, "baseline_events": raw_total}),
        Row(section, e2e_figure, "events/s", best(e2e), "BLMOVE + LREM consumer, 1 thread", max(raw1),
            note=note, extra={**counts, "baseline_events": raw_total}),
        Row(section, e2e_figure, "events/s", best(e2e), "rq worker (fork per job)", rq,
            note=note or problems.get("rq", ""), extra={**counts, "baseline_events": rq_total}),
    ]


def _scaling(bench: _Bench, config: Config) -> dict[str, Any]:
    """One worker process with 1, 2, 5 and 10 threads: rocketman and the BLMOVE + LREM consumer."""
    ours_total, raw_total = config.pick(20_000, 10_000), config.pick(4_000, 1_500)
    ours: list[float | None] = []
    raw: list[float] = []
    for threads in WORKER_COUNTS:
        mine, theirs = interleave(
            config.pick(2, 1),
            lambda t=threads: float("nan") if bench.unavailable else bench.rocketman_rate(ours_total, t),  # type: ignore[misc]
            lambda t=threads: bench.raw_rate(raw_total, t),  # type: ignore[misc]
        )
        ours.append(None if bench.unavailable else max(mine))
        raw.append(max(theirs))
    return {"workers": list(WORKER_COUNTS), "rocketman": ours, "BLMOVE + LREM": raw,
            "rocketman_events": ours_total, "baseline_events": raw_total}
