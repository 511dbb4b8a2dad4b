"""The consumer module of the worker-processes scaling figure: one subscription, several processes.

``rocketman worker bench._scale_consumer --workers 5``, started once or
twice: every process hosts ``bench.scale`` on ``bench.event``, so they share
its queue; each reports its own count (see :class:`bench._tally.SharedTally`).
"""

from __future__ import annotations

import os
from typing import Any

import rocketman_core

from ._tally import SharedTally

#: The subscription every process hosts.
SUBSCRIPTION = "bench.scale"

_tally = SharedTally(os.environ["BENCH_REDIS_URL"], os.environ["BENCH_RESULT_KEY"])


@rocketman_core.on_event("bench.event", name=SUBSCRIPTION)
def handle(payload: Any) -> None:
    """The trivial handler: count the event."""
    _tally()
