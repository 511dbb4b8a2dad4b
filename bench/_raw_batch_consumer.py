"""The raw ceiling of a batching Redis consumer: one Lua RPOP of 64 per round trip, json-decoded.

``python -m bench._raw_batch_consumer THREADS``: each thread pops up to 64
messages at once from ``raw:queue`` with a one-line Lua script (``RPOP key
64``), decodes each one's JSON and runs the handler. No lease, no
acknowledgement, no retry: what a consumer that keeps no promise costs, the
ceiling rocketman's end-to-end figure is judged against. It exits after the
``BENCH_TOTAL``-th message.
"""

from __future__ import annotations

import json
import os
import sys

import redis

from ._raw_consumer import run_threads
from ._tally import from_environment

QUEUE = "raw:queue"
BATCH = 64
POP = "return redis.call('RPOP', KEYS[1], ARGV[1])"


def main(threads: int) -> None:
    """Consume with ``threads`` threads until the tally is complete, then exit."""
    tally = from_environment()
    client: redis.Redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    pop = client.register_script(POP)
    loads = json.loads

    def handle(payload: object) -> None:
        tally()

    def consume() -> None:
        while not tally.complete.is_set():
            messages = pop(keys=[QUEUE], args=[BATCH])
            if not messages:
                tally.complete.wait(0.001)
                continue
            for message in messages:
                handle(loads(message)["payload"])

    run_threads(threads, lambda index: consume(), tally.complete)


if __name__ == "__main__":
    main(int(sys.argv[1]))
