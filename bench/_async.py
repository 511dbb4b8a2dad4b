"""The async section: ``async def`` consumers and ``emit_async``, each beside its bound or a baseline.

- **I/O-bound async consumers**: N events whose consumer awaits
  ``asyncio.sleep(SLEEP)``, with the in-flight bound ``async_concurrency`` at
  its default and at 500, on memory (in this process) and on Redis (one
  worker process of 5 threads draining a pre-filled queue, as the Redis
  section's end-to-end rows); the rate is N over the time from the first
  consumer's start to the last one's end, taken in the worker, beside the
  limit the bound sets (``C / SLEEP``). rocketman's sync consumers on 5
  threads doing ``time.sleep(SLEEP)`` beside their own limit, for the record.
- **Trivial async consumers through Redis**: the Redis section's end-to-end
  drain (same events, same payloads, same fill, same window) with an
  ``async def`` consumer, beside taskiq (an async task doing the same
  trivial work) and beside rocketman's sync consumer in the same runs.
- **emit_async**: ``await app.emit_async`` from a producer-only runtime,
  one producer and 100 concurrent tasks, beside an LPUSH of the same bytes
  on bare redis.asyncio connections; and on memory beside the sync ``emit``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ._async_handlers import SLEEP, SUBSCRIPTION, handler
from ._measure import PAIRED_RUNS, WIDE_RUNS, Config, script
from ._report import Row, Target
from ._tally import Tally

if TYPE_CHECKING:
    from ._redis import _Bench

__all__ = ["async_section"]

SECTION = "async"
EVENT = "bench.event"
THREADS = 5
#: The bounds of the I/O-bound rows besides the default.
LARGER_BOUND = 500
#: Concurrent producer tasks of the concurrent emit_async row.
TASKS = 100
RAW_QUEUE = "raw:queue"
#: What the Redis storage writes before an event's bytes in its inbox (NUL, the name, a newline):
#: the baseline pushes it too, so that both push the same bytes.
FRAME = b"\0" + EVENT.encode() + b"\n"

#: One producer task's loop: (its index, its payloads).
Produce = Callable[[int, Sequence[Any]], Awaitable[None]]


def default_bound() -> int:
    """rocketman's default ``async_concurrency``."""
    from rocketman_core import Settings

    return int(Settings._field_defaults["async_concurrency"])


# -- I/O-bound and trivial consumers -----------------------------------------------


def memory_drain(kind: str, total: int, bound: int) -> float:
    """rocketman, memory + 5 threads, draining ``total`` events pushed at once.

    A runtime starts its workers at its first emit, so the queue cannot be
    filled before they run: the workers start first, then one ``emit_many``
    queues every event in one push, before any consumer can start. The rate
    is ``total`` over the handlers' window (see :mod:`bench._async_handlers`).
    """
    import rocketman_core

    tally = Tally(total)
    app = rocketman_core.Rocketman()
    app.configure(storage="memory", executor="threads", worker_count=THREADS, latency=1.0,
                  async_concurrency=bound)
    app.on_event(EVENT, name=SUBSCRIPTION)(handler(kind, tally))
    try:
        app.start()
        app.emit_many([(EVENT, {"n": n}) for n in range(total)])
        if not tally.complete.wait(60 + total * SLEEP):
            raise TimeoutError(f"{total} events were not all handled in {60 + total * SLEEP:.0f} s")
        return total / (tally.last - tally.first)
    finally:
        app.shutdown(timeout=5)


def redis_drain(bench: _Bench, kind: str, total: int, bound: int) -> float:
    """rocketman, 1 worker process of 5 threads (``bench._async_consumer``), draining a pre-filled queue.

    The same fill as the Redis section's end-to-end rows (``emit_many`` of
    1,000, checked); the window is the handlers', in the worker.
    """
    argv = [script("rocketman"), "worker", "bench._async_consumer", "--storage", bench.storage,
            "--workers", str(THREADS)]
    return bench._drain_rate(argv, total, lambda: bench._fill(total, 1), register=(SUBSCRIPTION,),
                             env={"BENCH_CONSUMER": kind, "ROCKETMAN_ASYNC_CONCURRENCY": str(bound)})


# -- emit_async ------------------------------------------------------------------


def _shares(total: int, tasks: int) -> list[list[dict[str, int]]]:
    """The payloads ``{"n": i}`` of ``total`` events, dealt into ``tasks`` loops (built before any clock)."""
    return [[{"n": n} for n in range(task, total, tasks)] for task in range(tasks)]


async def _timed(produce: Produce, shares: list[list[dict[str, int]]]) -> float:
    """Events per second of ``produce`` over ``shares``: one loop awaited, or one task each, gathered."""
    total = sum(map(len, shares))
    started = time.perf_counter()
    if len(shares) == 1:
        await produce(0, shares[0])
    else:
        await asyncio.gather(*(produce(index, share) for index, share in enumerate(shares)))
    return total / (time.perf_counter() - started)


class _Emits:
    """emit_async on Redis and its baseline, each run in a fresh event loop (``asyncio.run``)."""

    def __init__(self, bench: _Bench) -> None:
        self.bench = bench
        #: The size of the newest value each side pushed, per run: the same bytes on both sides.
        self.sizes: dict[str, list[int]] = {"rocketman": [], "baseline": []}

    def _newest(self, side: str, key: str) -> None:
        self.sizes[side].append(len(self.bench.client.lindex(key, 0) or b""))

    def rocketman(self, total: int, tasks: int) -> float:
        """``await app.emit_async`` from ``tasks`` loops, a producer-only runtime, one subscription."""
        from rocketman_redis import KeyLayout

        from ._redis import NAMESPACE, SINGLE

        bench = self.bench
        bench.client.flushdb()
        bench.subscribe(NAMESPACE, [(SINGLE, EVENT)])
        app = bench.app()
        shares = _shares(total, tasks)

        async def run() -> float:
            emit = app.emit_async
            # Before the clock: the runtime is prepared, this loop's client made,
            # and as many connections opened as there are tasks.
            await emit(EVENT, {"n": -1})
            await asyncio.gather(*(emit(EVENT, {"n": -1}) for _ in range(tasks)))

            async def produce(index: int, payloads: Sequence[Any]) -> None:
                for payload in payloads:
                    await emit(EVENT, payload)

            rate = await _timed(produce, shares)
            self._newest("rocketman", KeyLayout(NAMESPACE).queue)
            return rate

        try:
            rate = asyncio.run(run())
            stats = app.stats()  # after the clock: routes what the loop left in the inbox
        finally:
            app.shutdown(timeout=1)
            bench.client.flushdb()
        if stats["queued"] != total + 1 + tasks or stats["parked"]:
            raise RuntimeError(f"emit_async: {total + 1 + tasks} events were not all queued: {stats}")
        return rate

    def bare(self, total: int, tasks: int) -> float:
        """LPUSH of the same bytes on ``tasks`` bare redis.asyncio connections, one per task.

        What a hand-written async producer does, the same work as
        ``emit_async``: the same envelope (an id of a random prefix and a
        counter, the name, the time to the millisecond, the attempt, the
        payload) made with the standard library's C encoder in the loop,
        behind the same frame; then ``send_packed_command`` and
        ``read_response`` on a connection of its own (no pool round, no
        retry, no health check, no command layer). The connections are open
        before the clock.
        """
        import redis.asyncio

        bench = self.bench
        bench.client.flushdb()
        shares = _shares(total, tasks)
        prefix = os.urandom(8).hex() + "-"
        dumps, now = json.JSONEncoder(separators=(",", ":")).encode, time.time
        counter = itertools.count(1).__next__

        async def run() -> float:
            pool: Any = redis.asyncio.ConnectionPool.from_url(bench.url)
            connections = [await pool.get_connection() for _ in range(tasks)]
            try:
                for connection in connections:
                    await connection.send_packed_command(connection.pack_command("PING"), check_health=False)
                    await connection.read_response()

                async def produce(index: int, payloads: Sequence[Any]) -> None:
                    connection = connections[index]
                    send, pack, read = (connection.send_packed_command, connection.pack_command,
                                        connection.read_response)
                    for payload in payloads:
                        value = FRAME + dumps({"id": f"{prefix}{counter():x}", "name": EVENT,
                                               "emitted_at": round(now(), 3), "attempt": 0,
                                               "payload": payload}).encode()
                        await send(pack("LPUSH", RAW_QUEUE, value), check_health=False)
                        await read()

                rate = await _timed(produce, shares)
                self._newest("baseline", RAW_QUEUE)
                return rate
            finally:
                for connection in connections:
                    await pool.release(connection)
                await pool.disconnect()

        try:
            rate = asyncio.run(run())
            pushed = bench.client.llen(RAW_QUEUE)
        finally:
            bench.client.flushdb()
        if pushed != total:
            raise RuntimeError(f"the bare LPUSH left {pushed} of {total} values")
        return rate


def memory_emit_us(total: int, awaited: bool) -> float:
    """µs per ``await emit_async`` (``awaited``) or per ``emit``, memory, ``worker_count=0``, in a coroutine."""
    import rocketman_core

    app = rocketman_core.Rocketman()
    app.configure(storage="memory", executor="threads", worker_count=0, latency=1.0)
    app.on_event(EVENT, name=SUBSCRIPTION)(lambda payload: None)  # a subscription to queue into
    app.start()
    (payloads,) = _shares(total, 1)

    async def run() -> float:
        if awaited:
            emit_async = app.emit_async
            await emit_async(EVENT, {"n": -1})
            started = time.perf_counter()
            for payload in payloads:
                await emit_async(EVENT, payload)
        else:
            emit = app.emit
            emit(EVENT, {"n": -1})
            started = time.perf_counter()
            for payload in payloads:
                emit(EVENT, payload)
        return (time.perf_counter() - started) / total * 1e6

    try:
        return asyncio.run(run())
    finally:
        app.shutdown(timeout=1)


# -- the rows ----------------------------------------------------------------------


class _Sizes(NamedTuple):
    """How many events each kind of row measures."""

    #: The I/O-bound rows: each waiting consumer's events.
    waits: int
    #: The trivial consumers through Redis: the Redis section's end-to-end count.
    trivial: int
    #: The emit_async rows.
    emits: int


class _Runs(NamedTuple):
    """Every run of the section: lists of each contender's runs, interleaved as :func:`~bench._redis._paired` ran them."""

    #: memory: async at each bound, then sync; and why one failed.
    memory_waits: list[list[float]]
    memory_waits_problem: str
    #: memory: µs per emit_async, then per emit.
    memory_emits: list[list[float]]
    memory_emits_problem: str
    #: Redis: async at each bound, then sync.
    redis_waits: list[list[float]]
    #: Redis: trivial async, then trivial sync.
    trivial: list[list[float]]
    #: Redis: taskiq on the same events.
    taskiq: list[float]
    #: Redis: emit_async, bare, emit_async with TASKS tasks, bare with TASKS tasks.
    emits: list[list[float]]
    #: The sizes of the newest values each emit side pushed.
    sizes: dict[str, list[int]]
    #: "waits", "trivial", "taskiq", "emits": why a Redis measure failed; "redis": why none ran.
    problems: dict[str, str]


def async_section(config: Config) -> list[Row]:
    """Every row of the section; the Redis ones on a redis-server of the suite's own."""
    sizes = _Sizes(waits=config.pick(2000, 1000), trivial=config.pick(10_000, 2_000),
                   emits=config.pick(20_000, 5_000))
    bounds = (default_bound(), LARGER_BOUND)
    return _rows(config, sizes, bounds, _measure(config, sizes, bounds))


def _waiting(measure: Callable[[str, int], float], bounds: Sequence[int]) -> tuple[list[list[float]], str]:
    """The waiting consumers, async at each bound and sync, interleaved, PAIRED_RUNS times."""
    from ._redis import _paired

    measures: list[Callable[[], float]] = [lambda c=c: measure("async-sleep", c) for c in bounds]  # type: ignore[misc]
    measures.append(lambda: measure("sync-sleep", bounds[0]))
    return _paired(measures, PAIRED_RUNS)


def _measure(config: Config, sizes: _Sizes, bounds: Sequence[int]) -> _Runs:
    from rocketman_relay_redis.testing import RedisServer

    from ._redis import _Bench, _paired, _reason

    memory_waits, memory_waits_problem = _waiting(
        lambda kind, bound: memory_drain(kind, sizes.waits, bound), bounds)
    memory_emits, memory_emits_problem = _paired(
        [lambda: memory_emit_us(sizes.emits, True), lambda: memory_emit_us(sizes.emits, False)],
        max(PAIRED_RUNS, config.repeats))
    runs = _Runs(memory_waits, memory_waits_problem, memory_emits, memory_emits_problem,
                 [[] for _ in range(len(bounds) + 1)], [[], []], [], [[], [], [], []], {}, {})
    server = RedisServer(appendonly=False)
    try:
        server.start()
        bench = _Bench(server.url)
    except Exception as error:
        server.close()
        runs.problems["redis"] = f"redis-server: {_reason(error)}"
        return runs
    try:
        if bench.unavailable:
            runs.problems["redis"] = bench.unavailable
            return runs
        problems = runs.problems
        redis_waits, problems["waits"] = _waiting(
            lambda kind, bound: redis_drain(bench, kind, sizes.waits, bound), bounds)
        trivial, problems["trivial"] = _paired(
            [lambda: redis_drain(bench, "async", sizes.trivial, bounds[0]),
             lambda: bench.rocketman_rate(sizes.trivial, THREADS)], WIDE_RUNS)
        # A peer runs apart, 3 times (each run takes seconds), as in the Redis section.
        (taskiq,), problems["taskiq"] = _paired(
            [lambda: bench.taskiq_rate(sizes.trivial, max_async_tasks=bounds[0])], config.pick(3, 1))
        emits = _Emits(bench)
        emitted, problems["emits"] = _paired(
            [lambda: emits.rocketman(sizes.emits, 1), lambda: emits.bare(sizes.emits, 1),
             lambda: emits.rocketman(sizes.emits, TASKS), lambda: emits.bare(sizes.emits, TASKS)],
            WIDE_RUNS)
        return runs._replace(redis_waits=redis_waits, trivial=trivial, taskiq=taskiq, emits=emitted,
                             sizes=emits.sizes)
    finally:
        server.close()


def _rows(config: Config, sizes: _Sizes, bounds: Sequence[int], runs: _Runs) -> list[Row]:
    problems = runs.problems
    unavailable = problems.get("redis")
    note = f"rocketman's Redis storage is not available: {unavailable}" if unavailable else ""

    def why(*names: str) -> str:
        return note or "; ".join(problems[name] for name in names if problems.get(name))

    bound = bounds[0]
    rows = [
        *_waiting_rows(f"memory, {THREADS} worker threads",
                       "workers started, then every event queued by one emit_many", sizes.waits, bounds,
                       runs.memory_waits, runs.memory_waits_problem),
        *_waiting_rows(f"Redis, 1 worker process of {THREADS} threads, pre-filled",
                       "queue filled (emit_many of 1,000, checked), then the worker process started",
                       sizes.waits, bounds, runs.redis_waits, why("waits")),
    ]
    trivial_figure = (f"trivial async consumers, Redis, 1 worker process of {THREADS} threads, "
                      f"{sizes.trivial:,} events (pre-filled)")
    trivial_extra = {"events": sizes.trivial, "runs": len(runs.trivial[0]), "async_concurrency": bound,
                     "threads": THREADS,
                     "method": "the Redis section's end-to-end drain: queue filled with emit_many of "
                               "1,000, then the worker started; rate = N over its first to its last "
                               "handler call, in the worker"}
    async_runs, sync_runs = runs.trivial
    rows += [
        Row.paired(SECTION, trivial_figure, "events/s", async_runs,
                   f"taskiq ListQueueBroker, 1 worker process, --max-async-tasks {bound}", runs.taskiq,
                   Target(">=", 10.0), note=why("trivial", "taskiq"),
                   extra={**trivial_extra, "peer_runs": config.pick(3, 1),
                          "peer_setup": "kiq fills (LPUSH); taskiq worker bench._taskiq_app:broker "
                                        f"--workers 1 --max-async-tasks {bound} (rocketman's in-flight "
                                        "bound, and taskiq's own default); async handler; no result "
                                        "backend; its runs apart from ours"}),
        Row.paired(SECTION, trivial_figure, "events/s", async_runs,
                   f"rocketman, trivial sync consumers, 1 worker process of {THREADS} threads",
                   sync_runs, Target(">=", 0.7), note=why("trivial"), extra=trivial_extra),
    ]
    emit_extra = {"events": sizes.emits, "runs": len(runs.emits[0]), "sizes_bytes": runs.sizes,
                  "method": "producer-only runtime (worker_count=0), one subscription, everything "
                            "connected before the clock; the clock around the awaited loop(s)"}
    ours, bare, ours_tasks, bare_tasks = runs.emits
    memory_async, memory_sync = runs.memory_emits
    rows += [
        Row.paired(SECTION, f"await emit_async, Redis, one producer, {sizes.emits:,} events one at a time",
                   "events/s", ours,
                   "LPUSH of the same bytes on a bare redis.asyncio connection, json.dumps in the loop",
                   bare, Target(">=", 0.8), note=why("emits"), extra={**emit_extra, "tasks": 1}),
        Row.paired(SECTION, f"await emit_async, Redis, {TASKS} concurrent producer tasks in one loop, "
                            f"{sizes.emits:,} events", "events/s", ours_tasks,
                   f"{TASKS} tasks, each its own bare redis.asyncio connection, json.dumps in the loop",
                   bare_tasks, Target(">=", 0.8), note=why("emits"), extra={**emit_extra, "tasks": TASKS}),
        Row.paired(SECTION, f"await emit_async, memory, worker_count=0, {sizes.emits:,} events "
                            "(for the record)", "µs", memory_async, "emit (sync), the same runtime",
                   memory_sync, note=runs.memory_emits_problem,
                   extra={"events": sizes.emits, "runs": len(memory_async)}),
    ]
    return rows


def _waiting_rows(where: str, fill: str, events: int, bounds: Sequence[int], results: list[list[float]],
                  note: str) -> list[Row]:
    """The I/O-bound rows of one storage: the async consumers at each bound, the sync ones for the record."""
    extra = {"events": events, "sleep_s": SLEEP, "threads": THREADS,
             "method": f"{fill}; rate = N / (last consumer end - first consumer start), taken in the worker"}
    rows = []
    for bound, rates in zip(bounds, results, strict=False):
        rows.append(Row.paired(
            SECTION, f"I/O-bound async consumers (await asyncio.sleep({SLEEP:g})), {where}, "
                     f"async_concurrency={bound}, {events:,} events", "events/s", rates,
            f"the bound: {bound} in flight / {SLEEP:g} s", [bound / SLEEP] * len(rates),
            Target(">=", 0.8), note=note, extra={**extra, "async_concurrency": bound}))
    sync = results[len(bounds)]
    rows.append(Row.paired(
        SECTION, f"sync consumers (time.sleep({SLEEP:g})), {where}, {events:,} events (for the record)",
        "events/s", sync, f"the bound: {THREADS} threads / {SLEEP:g} s", [THREADS / SLEEP] * len(sync),
        note=note, extra=extra))
    return rows
