"""huey's side of the Redis end-to-end benchmark: a RedisHuey and one trivial task.

The benchmark enqueues by calling ``bench_event(payload)`` (huey's producer
API: calling a task enqueues it) and runs ``huey_consumer
bench._huey_app.huey -w 5 -k thread`` against its own redis-server
(``BENCH_REDIS_URL``, read at import). RedisHuey's defaults otherwise: a
blocking read of the queue (BRPOP), results stored only for tasks that return
something (this one returns None, so nothing is stored).
"""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey  # type: ignore[import-untyped]

from ._tally import Tally, from_environment

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])

_tally: list[Tally] = []


@huey.task()  # type: ignore[untyped-decorator]
def bench_event(payload: Any) -> None:
    """The trivial handler: count the message (the tally is made in the worker process)."""
    if not _tally:
        _tally.append(from_environment())
    _tally[0]()
