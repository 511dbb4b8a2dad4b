"""Steady state on Redis: producers emitting one event per call while one worker process consumes.

The drain figures of :mod:`bench._redis` time a worker emptying a queue
filled beforehand. Here the worker runs *while* events arrive, as in a
deployment: 2 producer processes (``bench._steady_producer``), each emitting
N/2 events one call at a time as fast as it can, and one worker process of 5
threads. Each system is run the same way, with its own producer API and
worker:

- rocketman: ``emit``; ``rocketman worker bench._redis_consumer --workers 5``;
- dramatiq: ``actor.send``; ``dramatiq bench._dramatiq_app --processes 1 --threads 5``;
- Celery: ``task.delay``; ``celery -A bench._celery_app worker -P threads -c 5``.

One run: start the worker (rocketman: until the storage lists its
subscription, so that no event is parked); start the producers, which each
send one warm-up event and say they are ready; wait until the worker has
consumed both warm-ups (a condition on Redis, with a deadline); release the
producers at once (a "go" list they BLPOP on). While they run the parent
samples the backlog (the LLEN of the system's queue keys) every 50 ms, until
the worker's tally reports its last handler call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._measure import PAIRED_RUNS, Config, python, script
from ._report import Row, Target
from ._steady_producer import DONE, GO, READY

if TYPE_CHECKING:
    from ._redis import _Bench, _Processes

__all__ = ["steady_rows"]

PRODUCERS = 2
THREADS = 5
#: Seconds between two samples of the backlog.
SAMPLE_EVERY = 0.05
#: "Bounded": the backlog when the producers finished, in % of N, at most this (a tenth of N).
BOUNDED_PERCENT = 10.0
RESULT = "bench:steady:result"

METHOD = (
    "worker started first and ready (rocketman: its subscription listed; then, for every system, "
    "one warm-up event from each producer consumed: rocketman nothing queued or reserved, dramatiq "
    "its message hash empty (a message leaves it when acked, after the actor ran), Celery its list "
    "and kombu's unacked hash empty (acked when the thread pool accepts the task)); the 2 producers "
    "released together (BLPOP on a go list), each emitting N/2 events one call at a time. "
    "handled rate = N / (last handler call - first producer's first emit), wall clock "
    "(the tally's last call is the N+2nd, warm-ups included, all handled before the start); "
    "emit rate = N / (last producer's end - first producer's start); backlog = sum of the "
    "LLEN of the system's queue keys, sampled from the parent every 50 ms; backlog at the "
    "producers' end = the larger of the samples just before and just after the last producer "
    "finished"
)


class Steady(NamedTuple):
    """One steady-state run of one system."""

    #: N / (last handler call - first emit start).
    handled: float
    #: N / (last producer end - first producer start).
    emitted: float
    #: Each producer's own rate over its own loop.
    producer_rates: list[float]
    #: The largest backlog sampled.
    max_backlog: int
    #: The backlog when the last producer finished.
    end_backlog: int
    #: Seconds from the last producer's end to the last handler call.
    tail: float
    #: How many samples of the backlog were taken.
    samples: int


class _System(NamedTuple):
    worker: list[str]
    #: The Redis keys whose LLEN, summed, is the backlog.
    backlog_keys: list[str]
    #: True when the worker has consumed the warm-up events.
    warmed: Callable[[], bool]
    #: True when the worker is up (before the producers start); None: no condition but the warm-up.
    started: Callable[[], bool] | None = None


def _systems(bench: _Bench) -> dict[str, _System]:
    from rocketman_redis import KeyLayout, RedisStorage

    from ._redis import CONSUMER, NAMESPACE

    client = bench.client

    def rocketman_warmed() -> bool:
        storage = RedisStorage(bench.url, namespace=NAMESPACE)
        try:
            stats = storage.stats()
        finally:
            storage.close()
        return stats["queued"] == 0 and stats["reserved"] == 0 and stats["parked"] == 0

    return {
        "rocketman": _System(
            [script("rocketman"), "worker", "bench._redis_consumer", "--storage", bench.storage,
             "--workers", str(THREADS)],
            [KeyLayout(NAMESPACE).queue, bench._queue(NAMESPACE, CONSUMER)],
            rocketman_warmed,
            lambda: CONSUMER in bench._subscription_names(),
        ),
        "dramatiq": _System(
            [script("dramatiq"), "bench._dramatiq_app", "--processes", "1", "--threads", str(THREADS)],
            ["dramatiq:bench"],
            lambda: client.llen("dramatiq:bench") == 0 and client.hlen("dramatiq:bench.msgs") == 0,
        ),
        "celery": _System(
            [script("celery"), "-A", "bench._celery_app", "worker", "-P", "threads", "-c", str(THREADS),
             "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"],
            ["celery"],
            lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0,
        ),
    }


def _tail(processes: _Processes, label: str) -> str:
    _, log, argv = processes[label]
    log.seek(0)
    return f"{' '.join(argv[:3])}: {log.read()[-1500:].decode(errors='replace')}"


def _until(condition: Callable[[], bool], processes: _Processes, doing: str, timeout: float) -> None:
    """Poll ``condition`` until true; fail if one of ``processes`` exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        for label, (process, _, _) in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{label} exited with {process.returncode} before it could {doing}:\n"
                                   f"{_tail(processes, label)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"did not {doing} in {timeout:.0f}s")
        time.sleep(0.02)


def run_once(bench: _Bench, name: str, events: int) -> Steady:
    """One steady-state run of ``name`` (a key of ``_systems``) with ``events`` events in all."""
    system = _systems(bench)[name]
    client = bench.client
    client.flushdb()
    total = events + PRODUCERS  # the warm-ups are handled too: the tally completes at the last event
    share = events // PRODUCERS
    producers = {f"producer-{i}": [python(), "-m", "bench._steady_producer", name,
                                   str(share if i else events - share * (PRODUCERS - 1)), str(i * share)]
                 for i in range(PRODUCERS)}
    try:
        with bench._processes({"worker": system.worker}, total, {"worker": RESULT}) as workers:
            if system.started is not None:
                _until(system.started, workers, "start", 60)
            with bench._processes(producers, total, {label: RESULT + ":" + label for label in producers}
                                  ) as running:
                _until(lambda: client.llen(READY) >= PRODUCERS, {**workers, **running},
                       "send the warm-up events", 60)
                try:
                    _until(system.warmed, workers, "consume the warm-up events", 60)
                except TimeoutError as error:
                    lengths = {key: client.llen(key) for key in system.backlog_keys}
                    raise TimeoutError(f"{error}; queue lengths {lengths}") from None
                client.rpush(GO, *["go"] * PRODUCERS)
                samples = _sample(bench, system.backlog_keys, workers, 120 + events / 100)
                _until(lambda: client.llen(DONE) >= PRODUCERS, running, "report", 30)
                done = [json.loads(raw) for raw in client.lrange(DONE, 0, -1)]
                result = json.loads(client.get(RESULT) or b"{}")
    finally:
        client.flushdb()
    return _figures(events, done, float(result["last"]), samples)


def _sample(bench: _Bench, keys: list[str], workers: _Processes, timeout: float) -> list[tuple[float, int]]:
    """Sample the backlog every SAMPLE_EVERY until the worker's tally reports: (wall time, backlog)."""
    client = bench.client
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    tick = time.monotonic()
    while True:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        pipe.exists(RESULT)
        *lengths, reported = pipe.execute()
        samples.append((time.time(), sum(lengths)))
        if reported:
            return samples
        process, _, _ = workers["worker"]
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode} during the run:\n"
                               f"{_tail(workers, 'worker')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not handle every event in {timeout:.0f}s "
                               f"(backlog {samples[-1][1]})")
        tick += SAMPLE_EVERY
        time.sleep(max(0.0, tick - time.monotonic()))


def _figures(events: int, done: list[dict[str, Any]], last: float,
             samples: list[tuple[float, int]]) -> Steady:
    start = min(float(d["start"]) for d in done)
    end = max(float(d["end"]) for d in done)
    before = [backlog for at, backlog in samples if at <= end]
    after = [backlog for at, backlog in samples if at >= end]
    end_backlog = max(before[-1:] + after[:1])
    return Steady(
        handled=events / (last - start),
        emitted=events / (end - start),
        producer_rates=[float(d["count"]) / (float(d["end"]) - float(d["start"])) for d in done],
        max_backlog=max(backlog for _, backlog in samples),
        end_backlog=end_backlog,
        tail=last - end,
        samples=len(samples),
    )


def steady_rows(bench: _Bench, config: Config) -> list[Row]:
    """The steady-state rows: rocketman's handled rate beside dramatiq's and Celery's, and its backlog."""
    from ._redis import _reason

    section = "redis"
    events = config.pick(20_000, 4_000)
    peer_runs = config.pick(3, 1)
    missing = bench.unavailable
    note = f"rocketman's Redis storage is not available: {missing}" if missing else ""
    runs: dict[str, list[Steady]] = {"rocketman": [], "dramatiq": [], "celery": []}
    problems: dict[str, str] = {}
    for index in range(PAIRED_RUNS):
        for name in runs:
            if name in problems or (name == "rocketman" and missing) or (name != "rocketman" and index >= peer_runs):
                continue
            try:
                runs[name].append(run_once(bench, name, events))
            except Exception as error:
                problems[name] = f"{name}: {_reason(error)}"
                runs[name] = []

    def figures(name: str) -> dict[str, Any]:
        done = runs[name]
        return {
            "handled_events_per_s": [r.handled for r in done],
            "emit_events_per_s": [r.emitted for r in done],
            "producer_events_per_s": [r.producer_rates for r in done],
            "max_backlog": [r.max_backlog for r in done],
            "backlog_at_producers_end": [r.end_backlog for r in done],
            "backlog_at_producers_end_fraction": [r.end_backlog / events for r in done],
            "seconds_from_producers_end_to_last_handled": [r.tail for r in done],
            "samples": [r.samples for r in done],
        }

    extra: dict[str, Any] = {
        "events": events, "producers": PRODUCERS, "threads": THREADS,
        "runs": {name: len(done) for name, done in runs.items()},
        "statistic": "median of each system's runs (rocketman 5, peers 3; 1 with --quick)",
        "method": METHOD,
        "backlog_keys": {"rocketman": "{bench}:queue (inbox) + the subscription's queue",
                         "dramatiq": "dramatiq:bench", "celery": "celery"},
        "systems": {name: figures(name) for name in runs},
    }
    mine = runs["rocketman"]
    figure = (f"steady state, {PRODUCERS} producer processes emitting one at a time, "
              f"1 worker process of {THREADS} threads, {events:,} events")
    peers = {"dramatiq": f"dramatiq, .send; 1 process of {THREADS} threads",
             "celery": f"Celery, .delay; 1 worker -P threads -c {THREADS}"}

    def why(*names: str) -> str:
        return note or "; ".join(problems[n] for n in names if n in problems)

    rows: list[Row] = []
    for peer, described in peers.items():
        rows.append(Row.paired(section, f"{figure}: handled rate", "events/s", [r.handled for r in mine],
                               described, [r.handled for r in runs[peer]], Target(">=", 3.0),
                               note=why("rocketman", peer), extra=extra))
    for peer, described in peers.items():
        rows.append(Row.paired(section, f"{figure}: the producers' emit rate", "events/s",
                               [r.emitted for r in mine], described, [r.emitted for r in runs[peer]],
                               note=why("rocketman", peer), extra=extra))
    # "Bounded": the worker keeps up, what is left when the producers stop is a small part of N.
    rows.append(Row.paired(section, f"{figure}: backlog when the producers finished (bounded)",
                           "% of N", [100 * r.end_backlog / events for r in mine], None, None,
                           Target("<=", BOUNDED_PERCENT, on="value"), note=why("rocketman"), extra=extra))
    for peer, described in peers.items():
        rows.append(Row.paired(section, f"{figure}: largest backlog sampled", "events",
                               [r.max_backlog for r in mine], described,
                               [r.max_backlog for r in runs[peer]], note=why("rocketman", peer),
                               extra=extra))
    return rows
