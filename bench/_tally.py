"""The trivial handler of the worker-process benchmarks, and how it reports back.

A worker process counts the events it handles; at the last one it writes the
wall-clock times of the first and the last handler call to one Redis key,
which the benchmark polls. One write per run, so the report costs nothing
measurable; the benchmark's parent and its worker share this machine's clock.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time

__all__ = ["Tally", "from_environment"]


class Tally:
    """Call once per handled event; thread-safe under the GIL (``itertools.count``)."""

    def __init__(self, total: int, redis_url: str, result_key: str) -> None:
        self.total = total
        self.redis_url = redis_url
        self.result_key = result_key
        self.first = 0.0
        self.complete = threading.Event()
        self._tick = itertools.count(1).__next__

    def __call__(self) -> None:
        count = self._tick()
        if count == 1:
            self.first = time.time()
        if count == self.total:
            import redis

            result = {"first": self.first, "last": time.time(), "pid": os.getpid()}
            redis.Redis.from_url(self.redis_url).set(self.result_key, json.dumps(result))
            self.complete.set()


def from_environment() -> Tally:
    """The tally of this worker process, from ``BENCH_TOTAL``, ``BENCH_REDIS_URL``, ``BENCH_RESULT_KEY``."""
    return Tally(int(os.environ["BENCH_TOTAL"]), os.environ["BENCH_REDIS_URL"], os.environ["BENCH_RESULT_KEY"])
