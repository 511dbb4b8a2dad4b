"""One producer process of the steady-state figure: ``python -m bench._steady_producer SYSTEM COUNT [FIRST]``.

It emits COUNT events ``{"n": FIRST}`` ... one call per event, as a web
process does (rocketman ``emit``, dramatiq ``actor.send``, Celery
``task.delay``), as fast as it can. Before that it sends one warm-up event
``{"n": -1}`` (its connection is made; the worker's handling of it is how the
parent knows the worker consumes), says it is ready (``RPUSH`` of its pid onto
READY), and waits for the start signal (``BLPOP`` on GO), so that every
producer starts at once. At the end it ``RPUSH``es its start and end (wall
clock, the worker's tally uses the same) onto DONE as JSON.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: The lists the parent and the producers meet on.
READY = "bench:steady:ready"
GO = "bench:steady:go"
DONE = "bench:steady:done"
SYSTEMS = ("rocketman", "dramatiq", "celery")


def _producer(system: str, url: str) -> tuple[Callable[[Any], object], Callable[[], object]]:
    """The system's one-event-per-call producer, and how to close it."""
    if system == "rocketman":
        import rocketman_core

        from ._redis import EVENT, NAMESPACE

        app = rocketman_core.Rocketman()
        app.configure(storage=f"{url}?namespace={NAMESPACE}", worker_count=0)
        return functools.partial(app.emit, EVENT), functools.partial(app.shutdown, timeout=1)
    if system == "dramatiq":
        from . import _dramatiq_app

        return _dramatiq_app.bench_event.send, _dramatiq_app.broker.close
    if system == "celery":
        from . import _celery_app

        return _celery_app.bench_event.delay, lambda: None
    raise SystemExit(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")


def main(argv: Sequence[str]) -> int:
    system, count = argv[0], int(argv[1])
    first = int(argv[2]) if len(argv) > 2 else 0
    import redis

    url = os.environ["BENCH_REDIS_URL"]
    client = redis.Redis.from_url(url)
    send, close = _producer(system, url)
    payloads = [{"n": n} for n in range(first, first + count)]
    send({"n": -1})  # the warm-up: connects (and declares, for Celery) before the start
    client.rpush(READY, os.getpid())
    if client.blpop([GO], timeout=120) is None:
        print(f"{system} producer: no start signal in 120 s", file=sys.stderr)
        return 2
    started = time.time()
    for payload in payloads:
        send(payload)
    ended = time.time()
    close()
    client.rpush(DONE, json.dumps({"start": started, "end": ended, "count": count, "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
