"""How the Redis storage scales: subscriptions, payload size, queue depth, dead letters, processes.

``python -m bench --only scale``. Every figure runs on a redis-server of the
suite's own (no persistence), from an empty server (``FLUSHDB``), like the
redis section. The cheap figures are the median of 3 runs (1 with
``--quick``); the expensive ones (a million pending events, 100,000 dead
letters) run once. The results are a dict (the run's JSON, ``series.scale``),
the tables of bench/README.md's "Scaling" block and ``results/scale.png``.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._measure import Config, script

if TYPE_CHECKING:
    from ._redis import _Bench

__all__ = ["scale_markdown", "scale_section"]

EVENT = "bench.event"
NAMESPACE = "bench-scale"
BATCH = 100
#: Subscriptions counts of the consumers figure; each has one matching subscription.
CONSUMER_COUNTS = (1, 100, 1000)
PAYLOAD_SIZES = (100, 10_000, 1_000_000)
WORKER_PROCESSES = (1, 2)
#: The subscription of bench._scale_consumer (not imported here: it reads its worker's environment).
SUBSCRIPTION = "bench.scale"
THREADS = 5


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _runs(config: Config) -> int:
    return config.pick(3, 1)


def _payload(size: int) -> str:
    return "x" * size


# -- consumers: N subscriptions, few of them matching ---------------------------


def _subscriptions(count: int, patterns: bool) -> tuple[list[tuple[str, str]], int]:
    """``count`` (name, pattern) subscriptions and how many match EVENT.

    Exact: the first is ``bench.event``, the others ``other.I``, one match.
    With patterns: ``bench.event``, ``bench.*`` and ``*`` match; of the
    others a third are exact (``other.I``), a third prefixes (``other.I.*``),
    a third suffixes (``*.other_I``), none matching.
    """
    if not patterns:
        return [("scale-0", EVENT)] + [(f"scale-{i}", f"other.{i}") for i in range(1, count)], 1
    found = [("scale-0", EVENT), ("scale-1", "bench.*"), ("scale-2", "*")]
    shapes = ("other.{}", "other.{}.*", "*.other_{}")
    found += [(f"scale-{i}", shapes[i % 3].format(i)) for i in range(3, count)]
    return found, 3


def _consumers_case(bench: _Bench, count: int, patterns: bool, singles: int, many: int,
                    runs: int) -> dict[str, Any]:
    subscriptions, matching = _subscriptions(count, patterns)

    def prepared() -> Any:
        bench.client.flushdb()
        bench.subscribe(NAMESPACE, subscriptions)
        app = bench.app(NAMESPACE)
        app.emit(EVENT, {"n": -1})  # connects, loads the scripts
        app.stats()  # routes it
        return app

    def check(app: Any, emitted: int) -> None:
        stats = app.stats()
        if stats["queued"] != emitted * matching or stats["parked"]:
            raise RuntimeError(f"{emitted} events were not routed to {matching} subscriptions: {stats}")

    def emit_once() -> Any:
        app = prepared()
        payloads = [{"n": n} for n in range(singles)]
        emit = app.emit

        def loop() -> None:
            for payload in payloads:
                emit(EVENT, payload)

        try:
            produced = bench._produce(loop, singles, app.stats)
            check(app, singles + 1)
            return produced
        finally:
            app.shutdown(timeout=1)

    def emit_many_once() -> Any:
        app = prepared()
        batches = [[(EVENT, {"n": n}) for n in range(first, first + BATCH)] for first in range(0, many, BATCH)]
        emit_many = app.emit_many

        def loop() -> None:
            for batch in batches:
                emit_many(batch)

        try:
            produced = bench._produce(loop, many, app.stats)
            check(app, many + 1)
            return produced
        finally:
            app.shutdown(timeout=1)

    singles_runs, many_runs = [], []
    for _ in range(runs):
        singles_runs.append(emit_once())
        many_runs.append(emit_many_once())
    bench.client.flushdb()
    return {
        "subscriptions": count, "matching": matching, "patterns": patterns,
        "emit_events": singles, "emit_many_events": many, "runs": runs,
        "emit_rate": _median([p.rate for p in singles_runs]),
        "emit_server_us": _median([p.server_us for p in singles_runs]),
        "emit_many_rate": _median([p.rate for p in many_runs]),
        "emit_many_server_us": _median([p.server_us for p in many_runs]),
        "emit_rate_runs": [p.rate for p in singles_runs],
        "emit_many_rate_runs": [p.rate for p in many_runs],
    }


def _consumers(bench: _Bench, config: Config) -> list[dict[str, Any]]:
    singles, many = config.pick(3000, 1000), config.pick(20_000, 5_000)
    cases = [(count, False) for count in CONSUMER_COUNTS] + [(CONSUMER_COUNTS[-1], True)]
    return [_consumers_case(bench, count, patterns, singles, many, _runs(config))
            for count, patterns in cases]


# -- payload size: emit and drain ---------------------------------------------------


def _fill(bench: _Bench, payloads: Iterator[dict[str, Any]], total: int, batch: int) -> None:
    app = bench.app()
    try:
        chunk: list[tuple[str, Any]] = []
        for payload in payloads:
            chunk.append((EVENT, payload))
            if len(chunk) == batch:
                app.emit_many(chunk)
                chunk = []
        if chunk:
            app.emit_many(chunk)
        stats = app.stats()
    finally:
        app.shutdown(timeout=1)
    if stats["queued"] != total or stats["parked"]:
        raise RuntimeError(f"{total} events were not routed to their subscription: {stats}")


def _payload_case(bench: _Bench, size: int, config: Config) -> dict[str, Any]:
    from ._redis import CONSUMER
    from ._redis import NAMESPACE as BENCH_NAMESPACE

    big = size >= 1_000_000
    emits = 100 if big else config.pick(2000, 1000)
    drained = config.pick(200, 50) if big else config.pick(10_000, 3000)
    batch = max(1, min(1000, 5_000_000 // size))
    data = _payload(size)
    emit_rates, drain_rates, envelopes = [], [], []
    argv = [script("rocketman"), "worker", "bench._redis_consumer", "--storage", bench.storage,
            "--workers", str(THREADS)]
    for _ in range(_runs(config)):
        bench.client.flushdb()
        bench.subscribe(BENCH_NAMESPACE, [(CONSUMER, EVENT)])
        app = bench.app()
        try:
            app.emit(EVENT, {"n": -1, "data": ""})
            started = time.perf_counter()
            for number in range(emits):
                app.emit(EVENT, {"n": number, "data": data})
            emit_rates.append(emits / (time.perf_counter() - started))
            app.stats()  # routes them
            newest = bench.client.lindex(bench._queue(BENCH_NAMESPACE, CONSUMER), 0)
            envelopes.append(len(newest or b""))
        finally:
            app.shutdown(timeout=1)
        drain_rates.append(bench._drain_rate(
            argv, drained,
            lambda: _fill(bench, ({"n": n, "data": data} for n in range(drained)), drained, batch),
            register=(CONSUMER,)))
    bench.client.flushdb()
    emit_rate, drain_rate = _median(emit_rates), _median(drain_rates)
    return {
        "payload_bytes": size, "envelope_bytes": _median(envelopes), "runs": _runs(config),
        "emit_events": emits, "drain_events": drained, "fill_batch": batch,
        "emit_rate": emit_rate, "emit_mb_s": emit_rate * size / 1e6,
        "drain_rate": drain_rate, "drain_mb_s": drain_rate * size / 1e6,
        "emit_rate_runs": emit_rates, "drain_rate_runs": drain_rates,
    }


def _payloads(bench: _Bench, config: Config) -> list[dict[str, Any]]:
    return [_payload_case(bench, size, config) for size in PAYLOAD_SIZES]


# -- queue depth: a million pending events -----------------------------------------------


def _used_memory(bench: _Bench) -> int:
    return int(bench.client.info("memory")["used_memory"])


def _depth(bench: _Bench, config: Config) -> dict[str, Any]:
    from ._redis import CONSUMER
    from ._redis import NAMESPACE as BENCH_NAMESPACE

    total = config.pick(1_000_000, 100_000)
    first_n = config.pick(100_000, 20_000)
    client = bench.client
    client.flushdb()
    bench.subscribe(BENCH_NAMESPACE, [(CONSUMER, EVENT)])
    app = bench.app()
    queue = bench._queue(BENCH_NAMESPACE, CONSUMER)
    try:
        app.stats()
        memory_before = _used_memory(bench)
        started = time.perf_counter()
        for first in range(0, total, 1000):
            app.emit_many([(EVENT, {"n": n}) for n in range(first, min(total, first + 1000))])
        pushed = time.perf_counter() - started
        app.stats()  # routes what still waits in the inbox
        filled = time.perf_counter() - started
        stats_times = []
        for _ in range(3):
            began = time.perf_counter()
            stats = app.stats()
            stats_times.append(time.perf_counter() - began)
        memory_after = _used_memory(bench)
        if stats["queued"] != total or stats["parked"]:
            raise RuntimeError(f"{total} events were not routed to their subscription: {stats}")
        envelope = len(client.lindex(queue, 0) or b"")
    finally:
        app.shutdown(timeout=1)
    drain = _drain_deep(bench, total, first_n, queue)
    client.flushdb()
    return {
        "events": total, "runs": 1, "fill_batch": 1000, "envelope_bytes": envelope,
        "fill_push_s": pushed, "fill_s": filled, "fill_rate": total / filled,
        "used_memory_bytes": memory_after - memory_before,
        "memory_per_event_bytes": (memory_after - memory_before) / total,
        "stats_ms": [t * 1000 for t in stats_times], "stats_ms_median": _median(stats_times) * 1000,
        **drain,
    }


def _drain_deep(bench: _Bench, total: int, first_n: int, queue: str) -> dict[str, Any]:
    """Start one worker process on the filled queue; the rate over its first ``first_n`` and over all."""
    from ._redis import RESULT_KEY

    argv = [script("rocketman"), "worker", "bench._redis_consumer", "--storage", bench.storage,
            "--workers", str(THREADS)]
    client = bench.client
    key = f"{RESULT_KEY}:deep"
    samples: list[tuple[float, int]] = []
    found: dict[str, Any] = {}

    def pending() -> set[str]:
        samples.append((time.time(), int(client.llen(queue))))
        raw = client.get(key)
        if raw is not None:
            found.update(json.loads(raw))
            return set()
        return {"worker"}

    with bench._processes({"worker": argv}, total, {"worker": key}) as processes:
        bench._wait(processes, pending, f"handle {total} events", 120 + total / 2000)
    first, last = float(found["first"]), float(found["last"])
    # The first sample by which first_n had left the queue (taken, at least), polled every 20 ms.
    reached = next((at for at, left in samples if total - left >= first_n + 64 * THREADS), last)
    return {"drain_first_events": first_n, "drain_first_rate": first_n / max(1e-9, reached - first),
            "drain_rate": total / (last - first), "drain_s": last - first}


# -- dead letters -------------------------------------------------------------------------


def _reason() -> str:
    """A dead letter's reason as the worker writes it: the one-line error, then its traceback."""
    import traceback

    try:
        raise ValueError("no ledger for invoice 7")
    except ValueError as error:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"ValueError: no ledger for invoice 7\n\n{trace}"


def _dead_letter_all(bench: _Bench, subscription: str, total: int, threads: int = 8) -> float:
    """Reserve every queued message and dead-letter it, as the worker does on a final failure; seconds.

    ``RedisStorage.dead_letter`` is what the dispatcher calls (one script
    call per message); several threads, as a worker's threads would.
    """
    from rocketman_redis import RedisStorage

    from ._redis import NAMESPACE as BENCH_NAMESPACE

    reason = _reason()
    storage = RedisStorage(bench.url, namespace=BENCH_NAMESPACE)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                deliveries = storage.reserve([subscription], 0, 64)  # a worker's batch
                if not deliveries:
                    return
                for delivery in deliveries:
                    storage.dead_letter(delivery, delivery.message, reason)
        except BaseException as error:
            errors.append(error)

    started = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    storage.close()
    if errors:
        raise errors[0]
    return elapsed


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def _dead_letters(bench: _Bench, config: Config) -> dict[str, Any]:
    from ._redis import CONSUMER
    from ._redis import NAMESPACE as BENCH_NAMESPACE

    total = config.pick(100_000, 10_000)
    client = bench.client
    client.flushdb()
    bench.subscribe(BENCH_NAMESPACE, [(CONSUMER, EVENT)])
    _fill(bench, ({"n": n} for n in range(total)), total, 1000)
    made = _dead_letter_all(bench, CONSUMER, total)
    app = bench.app()
    try:
        if app.stats()["dead"] != total:
            raise RuntimeError(f"not {total} dead letters: {app.stats()}")
        page_s, page = _timed(lambda: app.dead_letters(limit=100))
        consumer_page_s, _ = _timed(lambda: app.dead_letters(consumer=CONSUMER, limit=100))
        all_s, records = _timed(app.dead_letters)
        if len(page) != 100 or len(records) != total:
            raise RuntimeError(f"listed {len(page)} and {len(records)} dead letters")
        del records
        replay_s, replayed = _timed(app.replay_dead_letters)
        stats = app.stats()
        if replayed != total or stats["queued"] != total or stats["dead"]:
            raise RuntimeError(f"replayed {replayed} of {total}: {stats}")
        made_again = _dead_letter_all(bench, CONSUMER, total)
        purge_s, purged = _timed(app.purge_dead_letters)
        stats = app.stats()
        if purged != total or stats["dead"]:
            raise RuntimeError(f"purged {purged} of {total}: {stats}")
    finally:
        app.shutdown(timeout=1)
    client.flushdb()
    return {
        "dead_letters": total, "runs": 1, "make_s": made, "make_again_s": made_again,
        "make_rate": total / made,
        "list_page_ms": page_s * 1000, "list_consumer_page_ms": consumer_page_s * 1000,
        "list_all_s": all_s, "replay_all_s": replay_s, "purge_all_s": purge_s,
    }


# -- worker processes sharing one subscription -----------------------------------------


def _processes_rate(bench: _Bench, processes: int, total: int) -> float:
    """``processes`` worker processes of THREADS threads drain the same ``total`` events; the union's rate."""
    from ._redis import RESULT_KEY

    argv = [script("rocketman"), "worker", "bench._scale_consumer", "--storage", bench.storage,
            "--workers", str(THREADS)]
    commands = {f"p{i}": argv for i in range(processes)}
    client = bench.client
    client.flushdb()
    bench._register(commands, total, [SUBSCRIPTION])
    client.delete(*[f"{RESULT_KEY}:{label}" for label in commands])
    _fill(bench, ({"n": n} for n in range(total)), total, 1000)
    keys = {label: f"{RESULT_KEY}:{label}" for label in commands}
    reports: dict[str, Any] = {}

    def pending() -> set[str]:
        for label, key in keys.items():
            raw = client.get(key)
            if raw is not None:
                reports[label] = json.loads(raw)
        done = sum(int(r["count"]) for r in reports.values())
        if done > total:
            raise RuntimeError(f"{done} events handled of {total}")
        return set() if done == total else set(keys)

    with bench._processes(commands, total, keys) as running:
        bench._wait(running, pending, f"handle {total} events together", 60 + total / 200)
    client.flushdb()
    first = min(float(r["first"]) for r in reports.values() if r["count"])
    last = max(float(r["last"]) for r in reports.values() if r["count"])
    return total / (last - first)


def _worker_processes(bench: _Bench, config: Config) -> list[dict[str, Any]]:
    total = config.pick(20_000, 5_000)
    runs: dict[int, list[float]] = {count: [] for count in WORKER_PROCESSES}
    for _ in range(_runs(config)):
        for count in WORKER_PROCESSES:
            runs[count].append(_processes_rate(bench, count, total))
    return [{"processes": count, "threads": THREADS, "events": total, "runs": len(rates),
             "rate": _median(rates), "rate_runs": rates} for count, rates in runs.items()]


# -- the section ----------------------------------------------------------------------------


def scale_section(config: Config) -> dict[str, Any]:
    """Every scaling figure, on a redis-server of its own; a part that fails says why, the others go on."""
    import sys

    from rocketman_relay_redis.testing import RedisServer

    from ._redis import _Bench, _reason

    server = RedisServer(appendonly=False)
    server.start()
    found: dict[str, Any] = {"quick": config.quick}
    try:
        bench = _Bench(server.url)
        if bench.unavailable:
            return {**found, "unavailable": bench.unavailable}
        parts: list[tuple[str, Callable[[_Bench, Config], Any]]] = [
            ("consumers", _consumers), ("payload", _payloads), ("depth", _depth),
            ("dead_letters", _dead_letters), ("processes", _worker_processes),
        ]
        for name, part in parts:
            began = time.monotonic()
            try:
                found[name] = part(bench, config)
            except Exception as error:
                found[name] = {"failed": _reason(error)}
            print(f"   scale / {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        return found
    finally:
        server.close()


# -- the README's tables --------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{value:,.1f}" if value >= 1 else f"{value:.2f}"


def _failed(part: Any) -> str | None:
    if part is None:
        return "not measured"
    if isinstance(part, dict) and "failed" in part:
        return f"failed: {part['failed']}"
    return None


def scale_markdown(scale: dict[str, Any]) -> str:
    """The scaling figures as markdown: one table per figure."""
    if "unavailable" in scale:
        return f"Not measured: rocketman's Redis storage is not available ({scale['unavailable']})."
    out: list[str] = []
    runs = "1 run" if scale.get("quick") else "median of 3 runs"

    consumers: Any = scale.get("consumers")
    out.append(f"**Subscriptions** (emit to N subscriptions, of which 1 or 3 match; {runs}; server "
               "CPU per event includes routing into the matching queues)\n")
    if why := _failed(consumers):
        out.append(why)
    else:
        out += ["| subscriptions | matching | emit, one at a time | server CPU / event | "
                f"emit_many({BATCH}) | server CPU / event |", "|---|---|---|---|---|---|"]
        for case in consumers:
            shape = " (exact, prefix and suffix patterns)" if case["patterns"] else " (exact)"
            out.append(f"| {case['subscriptions']:,}{shape} | {case['matching']} | "
                       f"{_rate(case['emit_rate'])} events/s | {case['emit_server_us']:.1f} µs | "
                       f"{_rate(case['emit_many_rate'])} events/s | {case['emit_many_server_us']:.1f} µs |")
    payload: Any = scale.get("payload")
    out.append(f"\n**Payload size** (emit one at a time; drain by 1 worker process of {THREADS} "
               f"threads from a filled queue; {runs})\n")
    if why := _failed(payload):
        out.append(why)
    else:
        out += ["| payload | envelope | emit | emit | drain (events) | drain | drain |",
                "|---|---|---|---|---|---|---|"]
        for case in payload:
            size = case["payload_bytes"]
            label = f"{size // 1_000_000} MB" if size >= 1_000_000 else (
                f"{size // 1000} KB" if size >= 1000 else f"{size} B")
            out.append(f"| {label} | {case['envelope_bytes']:,.0f} B | {_rate(case['emit_rate'])} events/s | "
                       f"{_mb(case['emit_mb_s'])} MB/s | {case['drain_events']:,} | "
                       f"{_rate(case['drain_rate'])} events/s | {_mb(case['drain_mb_s'])} MB/s |")
    depth: Any = scale.get("depth")
    out.append("\n**Queue depth** (1 run)\n")
    if why := _failed(depth):
        out.append(why)
    else:
        n = depth["events"]
        out += ["| figure | value |", "|---|---|",
                f"| fill {n:,} pending events (emit_many of 1,000, routing included) | "
                f"{depth['fill_s']:.1f} s ({_rate(depth['fill_rate'])} events/s; the pushes alone "
                f"{depth['fill_push_s']:.1f} s) |",
                f"| Redis memory per pending event (INFO used_memory, {depth['envelope_bytes']} B envelope) | "
                f"{depth['memory_per_event_bytes']:.0f} B ({depth['used_memory_bytes'] / 1e6:,.0f} MB) |",
                f"| `stats()` with {n:,} pending | {depth['stats_ms_median']:.2f} ms |",
                f"| drain, 1 worker process of {THREADS} threads, first {depth['drain_first_events']:,} | "
                f"{_rate(depth['drain_first_rate'])} events/s |",
                f"| drain, the whole {n:,} | {_rate(depth['drain_rate'])} events/s "
                f"({depth['drain_s']:.1f} s) |"]
    dead: Any = scale.get("dead_letters")
    out.append("\n**Dead letters** (1 run)\n")
    if why := _failed(dead):
        out.append(why)
    else:
        n = dead["dead_letters"]
        out += ["| figure | time |", "|---|---|",
                f"| make {n:,} dead letters (reserve + `dead_letter`, 8 threads, one script call each) | "
                f"{dead['make_s']:.1f} s ({_rate(dead['make_rate'])}/s) |",
                f"| `dead_letters(limit=100)` | {dead['list_page_ms']:.1f} ms |",
                f"| `dead_letters(consumer=..., limit=100)` | {dead['list_consumer_page_ms']:.1f} ms |",
                f"| `dead_letters()`, all {n:,} | {dead['list_all_s']:.2f} s |",
                f"| `replay_dead_letters()`, all | {dead['replay_all_s']:.2f} s |",
                f"| `purge_dead_letters()`, all | {dead['purge_all_s'] * 1000:.1f} ms |"]
    processes: Any = scale.get("processes")
    out.append(f"\n**Worker processes** (sharing one subscription, {THREADS} threads each; rate over the "
               f"first handler call of any to the last of any; {runs})\n")
    if why := _failed(processes):
        out.append(why)
    else:
        out += ["| processes | events | drain |", "|---|---|---|"]
        out += [f"| {case['processes']} | {case['events']:,} | {_rate(case['rate'])} events/s |"
                for case in processes]
    return "\n".join(out)
