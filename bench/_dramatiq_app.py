"""dramatiq's side of the Redis end-to-end benchmark: its Redis broker and one trivial actor.

The benchmark enqueues with ``bench_event.send`` and runs ``dramatiq
bench._dramatiq_app --processes 1 --threads 5`` against its own redis-server
(``BENCH_REDIS_URL``, read at import: dramatiq binds actors to the broker set
when they are declared).
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from ._tally import Tally, from_environment

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)

_tally: list[Tally] = []


@dramatiq.actor(queue_name="bench", max_retries=0)
def bench_event(payload: Any) -> None:
    """The trivial handler: count the message (the tally is made in the worker process)."""
    if not _tally:
        _tally.append(from_environment())
    _tally[0]()
