"""A hand-written Redis consumer: BLMOVE a message, handle it, LREM it. The baseline.

``python -m bench._raw_consumer THREADS``: each thread moves one message at a
time from ``raw:queue`` to a processing list of its own (so that a crash
would leave it there to recover), decodes the JSON, runs the handler, and
removes it with LREM: two round trips per message. It exits after the
``BENCH_TOTAL``-th message.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable

import redis

from ._tally import from_environment

QUEUE = "raw:queue"


def consume_with_blmove(client: redis.Redis, queue: str, processing: str,
                        handle: Callable[[object], None], complete: threading.Event) -> None:
    """One thread of the hand-written consumer: BLMOVE, decode, handle, LREM, until ``complete``."""
    while not complete.is_set():
        message = client.blmove(queue, processing, 1, "RIGHT", "LEFT")
        if message is None:
            continue
        handle(json.loads(message)["payload"])
        client.lrem(processing, 1, message)  # type: ignore[arg-type]  # bytes are fine at run time


def run_threads(threads: int, consume: Callable[[int], None], complete: threading.Event) -> None:
    """Run ``consume(index)`` on ``threads`` daemon threads until ``complete``; then end the process."""
    workers = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    complete.wait()
    os._exit(0)


def main(threads: int) -> None:
    """Consume with ``threads`` threads until the tally is complete, then exit."""
    tally = from_environment()
    client: redis.Redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    def handle(payload: object) -> None:
        tally()

    run_threads(threads, lambda index: consume_with_blmove(
        client, QUEUE, f"raw:processing:{index}", handle, tally.complete), tally.complete)


if __name__ == "__main__":
    main(int(sys.argv[1]))
