"""The light-load latency benchmark's consumers: rocketman's, and the hand-written BLMOVE one.

As a consumer module (``rocketman worker bench._latency_consumer``), it
subscribes ``bench.latency`` to the event of the same name; the handler
notes ``time.time() - payload["sent"]`` (see :class:`bench._tally.LatencyTally`).

As a script (``python -m bench._latency_consumer THREADS``), it is the
baseline, built like :mod:`bench._raw_consumer`: each thread does ``BLMOVE``
from ``raw:latency`` to a processing list of its own, decodes the JSON, runs
the same handler and ``LREM``\\ s the message; it exits after the
``BENCH_TOTAL``-th timed event.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import rocketman_core

from ._tally import latency_from_environment

#: The event, and the subscription of the rocketman consumer.
EVENT = "bench.latency"
#: The baseline's list.
RAW_QUEUE = "raw:latency"

_tally = latency_from_environment()


@rocketman_core.on_event(EVENT, name=EVENT)
def handle(payload: Any) -> None:
    """The trivial handler: note how long the event took to get here."""
    _tally(payload["sent"], payload.get("warm", False))


def main(threads: int) -> None:
    """Consume ``raw:latency`` with ``threads`` threads until the tally is complete, then exit."""
    import redis

    from ._raw_consumer import consume_with_blmove, run_threads

    client: redis.Redis = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    run_threads(threads, lambda index: consume_with_blmove(
        client, RAW_QUEUE, f"raw:latency:processing:{index}", handle, _tally.complete), _tally.complete)


if __name__ == "__main__":
    main(int(sys.argv[1]))
