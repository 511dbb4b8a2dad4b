"""arq's side of the Redis end-to-end benchmark: one trivial job function and the worker's settings.

The benchmark enqueues with ``await pool.enqueue_job("bench_event", payload)``
and runs ``arq bench._arq_app.WorkerSettings`` against its own redis-server
(``BENCH_REDIS_URL``, read at import). ``max_jobs = 5`` (arq's default is 10)
to match the 5 threads of the others; ``keep_result = 0``: no result is
stored, like the other peers. Everything else is arq's default, including
its ``poll_delay`` of 0.5 s between reads of the queue (a sorted set).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import RedisSettings

from ._tally import Tally, from_environment

_tally: list[Tally] = []


async def bench_event(ctx: dict[str, Any], payload: Any) -> None:
    """The trivial handler: count the job (the tally is made in the worker process)."""
    if not _tally:
        _tally.append(from_environment())
    _tally[0]()


def redis_settings() -> RedisSettings:
    """arq's connection settings for BENCH_REDIS_URL."""
    return RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])


class WorkerSettings:
    """What ``arq bench._arq_app.WorkerSettings`` runs."""

    functions: ClassVar[list[Any]] = [bench_event]
    redis_settings = redis_settings()
    max_jobs = 5
    keep_result = 0
    handle_signals = True
