"""Resident memory: a million pending events, and a bounded queue under an overload.

Each measurement runs in a fresh interpreter (``python -m bench._rss ...``),
so that what the other benchmarks allocated does not count; the child prints
one JSON object on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from ._measure import Config, child_env, python, rss_mb
from ._report import Row, Target

__all__ = ["rss_section"]

FLAT_MB = 5.0  # how much a bounded queue's RSS may grow once the queue is full


def _pending(count: int) -> dict[str, Any]:
    from rocketman_memory import MemoryStorage

    import rocketman_core

    # A subscription whose consumer runs nowhere yet: with the memory storage,
    # an event that no subscription matches is dropped, not kept.
    storage = MemoryStorage()
    storage.subscribe([rocketman_core.Subscription("bench.pending", ("bench.event",))], "bench")
    app = rocketman_core.Rocketman()
    app.configure(storage=storage, worker_count=0)
    app.emit("bench.event", {"n": -1})  # builds the storage before the first reading
    base = rss_mb()
    emit = app.emit
    started = time.perf_counter()
    for number in range(count):
        emit("bench.event", {"n": number})
    elapsed = time.perf_counter() - started
    queued = app.stats()["queued"]
    if queued != count + 1:
        raise RuntimeError(f"{count + 1} events emitted, {queued} pending: the figure would not be of them")
    return {"base_mb": base, "rss_mb": rss_mb(), "queued": queued, "emit_us": elapsed / count * 1e6}


def _overload(seconds: float, maxsize: int) -> dict[str, Any]:
    import rocketman_core

    app = rocketman_core.Rocketman()
    storage = f"memory://?maxsize={maxsize}&full_timeout=60" if maxsize else "memory"
    app.configure(storage=storage, worker_count=1, latency=0.5)

    @app.on_event("bench.event")
    def slow(payload: Any) -> None:
        time.sleep(0.0005)  # a consumer about 300 times slower than the producer

    app.start()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.05):
            samples.append((round(time.monotonic() - started, 3), round(rss_mb(), 2)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    emitted = 0
    emit = app.emit
    while time.monotonic() - started < seconds:
        for _ in range(100):
            emit("bench.event", {"n": emitted})
            emitted += 1
    stop.set()
    sampler.join()
    return {"samples": samples, "emitted": emitted, "queued": app.stats()["queued"], "maxsize": maxsize}


def _child(*args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [python(), "-m", "bench._rss", *args], env=child_env(), capture_output=True, text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench._rss {' '.join(args)} failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def _growth(samples: list[list[float]]) -> float:
    """RSS at the end minus RSS a quarter into the run, once the queue has filled."""
    quarter = samples[len(samples) // 4][1]
    return max(value for _, value in samples[len(samples) // 4:]) - quarter


def rss_section(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Rows for both measurements, and the overload's RSS samples for the plot."""
    count = 1_000_000
    pending = _child("pending", str(count))
    seconds = config.pick(4, 2)
    bounded = _child("overload", str(seconds), "10000")
    unbounded = _child("overload", str(seconds), "0")
    rows = [
        Row("memory (RSS)", f"{count:,} pending events, one subscription, worker_count=0", "MB", pending["rss_mb"],
            target=Target("<=", 300, on="value"),
            note=f"{(pending['rss_mb'] - pending['base_mb']) * 1e6 / count:.0f} bytes per event",
            extra=pending),
        Row("memory (RSS)", f"growth under overload for {seconds} s, maxsize=10000", "MB",
            _growth(bounded["samples"]), "unbounded queue, same overload", _growth(unbounded["samples"]),
            Target("<=", FLAT_MB, on="value"),
            note="RSS at the end minus RSS a quarter into the run",
            extra={"bounded_emitted": bounded["emitted"], "unbounded_emitted": unbounded["emitted"]}),
    ]
    series = {"bounded": bounded["samples"], "unbounded": unbounded["samples"], "seconds": seconds}
    return rows, series


def main(argv: list[str]) -> None:
    """The child's entry point: print the measurement as JSON, then exit at once."""
    kind = argv[0]
    if kind == "pending":
        result = _pending(int(argv[1]))
    elif kind == "overload":
        result = _overload(float(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown measurement {kind!r}")
    print(json.dumps(result), flush=True)
    # Skip the interpreter's teardown: freeing a million objects and draining
    # the queue at exit would only add time.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
