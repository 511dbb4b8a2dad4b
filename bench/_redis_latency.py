"""Redis, emit to handler at light load: rocketman's worker process, a BLMOVE consumer, dramatiq.

1,000 events, one every millisecond (each sent at its slot of a fixed
schedule, so a late one does not push the others back), to a worker in
another process that is warmed up and idle-waiting before the first. Each
payload carries ``time.time()`` taken just before the emit call; the handler
notes ``time.time() - sent`` (:class:`bench._tally.LatencyTally`) and the
worker writes all of them to a Redis key at the end.

Called from :func:`bench._redis.redis_section`, on its server.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._measure import PAIRED_RUNS, Config, median, percentile, python, script
from ._report import Row, Target

if TYPE_CHECKING:
    from ._redis import _Bench

__all__ = ["latency_rows"]

#: The event and the subscription of bench._latency_consumer; the baseline's list.
EVENT = "bench.latency"
RAW_QUEUE = "raw:latency"
EVENTS = 1000
GAP = 0.001
THREADS = 5
#: Warm-up events, sent on the same schedule and not timed, before the timed ones.
WARM_UPS = 20
RESULT = "bench:result:latency"
FRACTIONS = {"p50": 0.50, "p99": 0.99, "p99.9": 0.999}

#: emit(number, warm): send one event, its payload stamped with time.time() just before.
Emit = Callable[[int, bool], None]


def _blocked_clients(bench: _Bench) -> int:
    return int(bench.client.info("clients")["blocked_clients"])


def _run(bench: _Bench, argv: list[str], emit: Emit, blocked: int,
         subscription: str | None = None) -> list[float]:
    """One light-load run: start the worker, warm it up, wait until it idles, send; latencies in µs.

    ``blocked``: how many of the server's clients must be blocked (in BLPOP,
    BLMOVE) before the first timed event: the worker is idle-waiting then,
    not still finishing the warm-up. ``subscription``: wait until the
    storage lists it before anything is emitted.
    """
    client = bench.client
    client.flushdb()
    pending: dict[str, Any] = {}

    def waiting_for(condition: Callable[[], bool]) -> Callable[[], set[str]]:
        return lambda: set() if condition() else {"worker"}

    def reported() -> bool:
        raw = client.get(RESULT)
        if raw is not None:
            pending["result"] = json.loads(raw)
        return raw is not None

    with bench._processes({"worker": argv}, EVENTS, {"worker": RESULT}) as processes:
        if subscription is not None:
            bench._wait(processes, waiting_for(lambda: subscription in bench._subscription_names()),
                        "register its subscription", 60)
        _schedule(emit, WARM_UPS, warm=True)
        bench._wait(processes, waiting_for(lambda: int(client.get(RESULT + ":warm") or 0) >= WARM_UPS),
                    f"handle {WARM_UPS} warm-up events", 60)
        bench._wait(processes, waiting_for(lambda: _blocked_clients(bench) >= blocked),
                    f"wait idle ({blocked} blocked clients)", 30)
        _schedule(emit, EVENTS)
        bench._wait(processes, waiting_for(reported), f"handle {EVENTS} events", 60)
    client.flushdb()
    latencies = [float(value) * 1e6 for value in pending["result"]["latencies"]]
    if len(latencies) != EVENTS:
        raise RuntimeError(f"the worker reported {len(latencies)} latencies, not {EVENTS}")
    return latencies


def _schedule(emit: Emit, count: int, warm: bool = False) -> None:
    """Send ``count`` events, the i-th at ``start + i * GAP`` (a fixed schedule: no drift)."""
    clock, sleep = time.perf_counter, time.sleep
    start = clock() + GAP
    for number in range(count):
        delay = start + number * GAP - clock()
        if delay > 0:
            sleep(delay)
        emit(number, warm)


def _percentiles(latencies: list[float]) -> dict[str, float]:
    return {name: percentile(latencies, fraction) for name, fraction in FRACTIONS.items()}


class _Contenders:
    """How to run each contender once, on one bench."""

    def __init__(self, bench: _Bench) -> None:
        self.bench = bench

    def rocketman(self) -> dict[str, float]:
        bench = self.bench
        app = bench.app()
        now = time.time

        def emit(number: int, warm: bool) -> None:
            if warm:
                app.emit(EVENT, {"n": number, "sent": now(), "warm": True})
            else:
                app.emit(EVENT, {"n": number, "sent": now()})

        argv = [script("rocketman"), "worker", "bench._latency_consumer", "--storage", bench.storage,
                "--workers", str(THREADS)]
        try:
            # 5 reserving threads blocked in BLPOP, and the router in BLMOVE.
            return _percentiles(_run(bench, argv, emit, THREADS + 1, subscription=EVENT))
        finally:
            app.shutdown(timeout=1)

    def raw(self) -> dict[str, float]:
        bench = self.bench
        push, dumps, now = bench.client.lpush, json.dumps, time.time

        def emit(number: int, warm: bool) -> None:
            payload: dict[str, Any] = {"n": number, "sent": now()}
            if warm:
                payload["warm"] = True
            push(RAW_QUEUE, dumps({"name": EVENT, "payload": payload}))

        argv = [python(), "-m", "bench._latency_consumer", str(THREADS)]
        return _percentiles(_run(bench, argv, emit, THREADS))

    def dramatiq(self) -> dict[str, float]:
        bench = self.bench
        os.environ["BENCH_REDIS_URL"] = bench.url  # read by the actor module at import
        from ._latency_dramatiq import bench_latency

        send, now = bench_latency.send, time.time

        def emit(number: int, warm: bool) -> None:
            if warm:
                send({"n": number, "sent": now(), "warm": True})
            else:
                send({"n": number, "sent": now()})

        argv = [script("dramatiq"), "bench._latency_dramatiq", "--processes", "1",
                "--threads", str(THREADS)]
        # dramatiq's consumer polls (it sleeps between fetches when idle): no blocked client.
        return _percentiles(_run(bench, argv, emit, 0))


def latency_rows(bench: _Bench, config: Config) -> list[Row]:
    """p50, p99 and p99.9 of rocketman beside the BLMOVE consumer (judged) and dramatiq."""
    from ._redis import _paired

    section = "redis"
    missing = bench.unavailable
    note = f"rocketman's Redis storage is not available: {missing}" if missing else ""
    contenders = _Contenders(bench)
    measures = [contenders.raw] if missing else [contenders.rocketman, contenders.raw]
    results, problem = _paired(measures, PAIRED_RUNS)
    ours = [] if missing else results.pop(0)
    (raw,) = results
    (dramatiq,), dramatiq_problem = _paired([contenders.dramatiq], config.pick(3, 1))

    figure = f"latency at light load ({EVENTS:,} events, {GAP * 1000:g} ms apart)"
    raw_name = f"BLMOVE + LREM consumer, {THREADS} threads"
    dramatiq_name = f"dramatiq, 1 process of {THREADS} threads"
    extra = {
        "events": EVENTS, "gap_s": GAP, "warm_ups": WARM_UPS, "runs": PAIRED_RUNS,
        "percentiles_us": {"rocketman": ours, "baseline": raw, "dramatiq": dramatiq},
        "method": "worker in its own process, warmed up and idle-waiting; time.time() just before "
                  "the emit to time.time() at the start of the handler",
    }
    rows: list[Row] = []
    for name in FRACTIONS:
        rows.append(Row.paired(
            section, f"{figure}, {name}", "µs", [run[name] for run in ours], raw_name,
            [run[name] for run in raw], Target("<=", 2.0) if name == "p99" else None,
            note=note or problem, extra=extra))
    for name in FRACTIONS:
        # dramatiq runs apart, fewer times: its runs are not paired with ours.
        rows.append(Row.paired(
            section, f"{figure}, {name}", "µs", [run[name] for run in ours], dramatiq_name,
            [run[name] for run in dramatiq], note=note or dramatiq_problem or problem, extra=extra))
    return rows


def _main() -> None:  # pragma: no cover - a manual check: python -m bench._redis_latency
    import sys

    from rocketman_relay_redis.testing import RedisServer

    from ._redis import _Bench

    server = RedisServer(appendonly=False)
    server.start()
    try:
        contenders = _Contenders(_Bench(server.url))
        for name in sys.argv[1:] or ["rocketman", "raw"]:
            runs = [getattr(contenders, name)() for _ in range(2)]
            print(name, {k: round(median([r[k] for r in runs]), 1) for k in FRACTIONS}, file=sys.stderr)
    finally:
        server.close()


if __name__ == "__main__":
    _main()
