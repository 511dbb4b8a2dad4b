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
from typing import Any

__all__ = ["LatencyTally", "Tally", "from_environment", "latency_from_environment"]


class Tally:
    """Call once per handled event; thread-safe under the GIL (``itertools.count``).

    The window runs from the first call to the ``total``-th. A handler that
    takes time (one that sleeps) calls :meth:`begin` as it starts and the
    tally as it ends: the window then runs from the first start to the last
    end. With no ``redis_url`` (in the benchmark's own process) nothing is
    written: read ``first`` and ``last`` once ``complete`` is set.
    """

    def __init__(self, total: int, redis_url: str | None = None, result_key: str | None = None) -> None:
        self.total = total
        self.redis_url = redis_url
        self.result_key = result_key
        self.first = 0.0
        self.last = 0.0
        self.server_cpu = bool(os.environ.get("BENCH_SERVER_CPU"))
        self.server_cpu_first: float | None = None
        self.complete = threading.Event()
        self._tick = itertools.count(1).__next__
        self._began = itertools.count(1).__next__
        self._begun = False

    def begin(self) -> None:
        """Call as a handler starts (before the tally, which it calls as it ends)."""
        if self._began() == 1:
            self._begun = True
            self._open()

    def __call__(self) -> None:
        count = self._tick()
        if count == 1 and not self._begun:
            self._open()
        if count == self.total:
            self.last = time.time()
            if self.redis_url is not None and self.result_key is not None:
                import redis

                result = {"first": self.first, "last": self.last, "pid": os.getpid(),
                          "server_cpu_first": self.server_cpu_first, "server_cpu_last": self._server_cpu()}
                redis.Redis.from_url(self.redis_url).set(self.result_key, json.dumps(result))
            self.complete.set()

    def _open(self) -> None:
        """The window opens: note the time (and the server's CPU)."""
        self.first = time.time()
        self.server_cpu_first = self._server_cpu()

    def _server_cpu(self) -> float | None:
        """Seconds of CPU redis-server used so far, read at the first and the last handler call.

        So that the server's CPU per event covers the same window as the
        rate, not the worker's start-up. Only when ``BENCH_SERVER_CPU`` is
        set (one INFO round trip in the first handler call).
        """
        if not self.server_cpu or self.redis_url is None:
            return None
        import redis

        info = redis.Redis.from_url(self.redis_url).info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def from_environment() -> Tally:
    """The tally of this worker process, from ``BENCH_TOTAL``, ``BENCH_REDIS_URL``, ``BENCH_RESULT_KEY``."""
    return Tally(int(os.environ["BENCH_TOTAL"]), os.environ["BENCH_REDIS_URL"], os.environ["BENCH_RESULT_KEY"])


class LatencyTally:
    """Call with each event's send time (``time.time()`` in the producer); notes its latency.

    The latency-recording variant of :class:`Tally`, for the light-load
    figures: warm-up events (``warm=True``) are counted under
    ``result_key + ":warm"`` (one INCR each, so that the benchmark knows the
    worker has handled one) and not timed. At the ``total``-th timed event it
    writes every latency (seconds, in arrival order) to ``result_key``.
    ``list.append`` is atomic under the GIL: five threads record without a lock.
    """

    def __init__(self, total: int, redis_url: str, result_key: str) -> None:
        self.total = total
        self.redis_url = redis_url
        self.result_key = result_key
        self.latencies: list[float] = []
        self.complete = threading.Event()
        self._tick = itertools.count(1).__next__
        self._client: Any = None

    def _redis(self) -> Any:
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(self.redis_url)
        return self._client

    def __call__(self, sent: float, warm: bool = False) -> None:
        if warm:
            self._redis().incr(self.result_key + ":warm")
            return
        self.latencies.append(time.time() - sent)
        if self._tick() == self.total:
            result = {"latencies": self.latencies, "pid": os.getpid()}
            self._redis().set(self.result_key, json.dumps(result))
            self.complete.set()


def latency_from_environment() -> LatencyTally:
    """The latency tally of this worker process, from the same variables as :func:`from_environment`."""
    return LatencyTally(int(os.environ["BENCH_TOTAL"]), os.environ["BENCH_REDIS_URL"],
                        os.environ["BENCH_RESULT_KEY"])


class SharedTally:
    """Call once per handled event, in each of several processes sharing one subscription.

    No process knows how many events it will get: each one reports its count
    and its first and last handler call under ``result_key``, from a thread,
    whenever they changed in the last ``every`` seconds; the benchmark sums
    the counts of every process until they make the total.
    """

    def __init__(self, redis_url: str, result_key: str, every: float = 0.02) -> None:
        self.redis_url = redis_url
        self.result_key = result_key
        self.first = 0.0
        self.last = 0.0
        self.count = 0
        self._tick = itertools.count(1).__next__
        self._every = every
        threading.Thread(target=self._report, daemon=True, name="bench-tally").start()

    def __call__(self) -> None:
        now = time.time()
        self.count = count = self._tick()
        if count == 1:
            self.first = now
        self.last = now

    def _report(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        reported = -1
        while True:
            time.sleep(self._every)
            count = self.count
            if count != reported:
                client.set(self.result_key, json.dumps(
                    {"count": count, "first": self.first, "last": self.last, "pid": os.getpid()}))
                reported = count
