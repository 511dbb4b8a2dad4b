"""rq's side of the Redis end-to-end benchmark: one trivial job.

rq's default worker forks a child per job, so the count cannot live in the
worker's memory: each job INCRs a counter in Redis (one round trip, small
beside the fork) and the last one writes the times of the first and last.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from rq import get_current_job


def bench_job(payload: Any) -> None:
    """Count this job in Redis; the first notes its time, the last writes the result."""
    job = get_current_job()
    assert job is not None
    connection = job.connection
    key = os.environ["BENCH_RESULT_KEY"]
    count = connection.incr(key + ":count")
    if count == 1:
        connection.set(key + ":first", time.time())
    if count == int(os.environ["BENCH_TOTAL"]):
        first = float(connection.get(key + ":first") or 0)
        connection.set(key, json.dumps({"first": first, "last": time.time()}))
