"""dramatiq's side of the light-load latency benchmark: one actor noting each message's latency.

``dramatiq bench._latency_dramatiq --processes 1 --threads 5`` against the
benchmark's redis-server (``BENCH_REDIS_URL``); the broker is the one of
:mod:`bench._dramatiq_app`. The benchmark sends with ``bench_latency.send``.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq

from ._dramatiq_app import broker
from ._tally import LatencyTally, latency_from_environment

__all__ = ["bench_latency", "broker"]

_tally: list[LatencyTally] = []
_made = threading.Lock()


@dramatiq.actor(queue_name="bench-latency", max_retries=0)
def bench_latency(payload: Any) -> None:
    """The trivial handler: note how long the message took to get here."""
    if not _tally:  # made in the worker process, at its first message, once
        with _made:
            if not _tally:
                _tally.append(latency_from_environment())
    _tally[0](payload["sent"], payload.get("warm", False))
