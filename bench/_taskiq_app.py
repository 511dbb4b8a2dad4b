"""taskiq's side of the Redis end-to-end benchmark: taskiq-redis's ListQueueBroker and one trivial task.

The benchmark enqueues with ``await bench_event.kiq(payload)`` and runs
``taskiq worker bench._taskiq_app:broker --workers 1 --max-async-tasks 5``
against its own redis-server (``BENCH_REDIS_URL``, read at import). No result
backend (taskiq's default keeps nothing). The messages go to the Redis list
``QUEUE`` (LPUSH by the producer, BRPOP by the worker).
"""

from __future__ import annotations

import os
from typing import Any

from taskiq_redis import ListQueueBroker

from ._tally import Tally, from_environment

QUEUE = "bench:taskiq"
#: The server this module's broker talks to: the redis and async sections
#: each run their own, so the parent reloads the module for the second one.
URL = os.environ["BENCH_REDIS_URL"]

broker = ListQueueBroker(URL, queue_name=QUEUE)

_tally: list[Tally] = []


@broker.task(task_name="bench.event")
async def bench_event(payload: Any) -> None:
    """The trivial handler: count the message (the tally is made in the worker process)."""
    if not _tally:
        _tally.append(from_environment())
    _tally[0]()
