"""Celery's side of the Redis end-to-end benchmark: a Redis broker, no result backend, one trivial task.

The benchmark enqueues with ``bench_event.delay`` and runs ``celery -A
bench._celery_app worker -P threads -c 5`` against its own redis-server
(``BENCH_REDIS_URL``, read at import). Messages go to Celery's default queue,
``celery`` (a Redis list of that name).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from ._tally import Tally, from_environment

#: The Redis list Celery's default queue lives in (kombu's Redis transport).
QUEUE = "celery"

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,  # no result backend: nothing is stored per task
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_redirect_stdouts=False,
)

_tally: list[Tally] = []


@app.task(name="bench.event", ignore_result=True)  # type: ignore[untyped-decorator]
def bench_event(payload: Any) -> None:
    """The trivial handler: count the message (the tally is made in the worker process)."""
    if not _tally:
        _tally.append(from_environment())
    _tally[0]()
