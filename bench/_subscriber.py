"""One subscription of the Redis fan-out end-to-end benchmark, named by ``BENCH_SUBSCRIPTION``.

``rocketman worker bench._subscriber --workers 5`` hosts it in a process of
its own; the benchmark starts three, ``bench.sub_a``, ``bench.sub_b`` and
``bench.sub_c``, all on the same event name: every event emitted goes to
each of them. The process reports its first and last handler call under its
own ``BENCH_RESULT_KEY`` (see :mod:`bench._tally`).
"""

from __future__ import annotations

import os
from typing import Any

import rocketman_core

from ._tally import from_environment

_tally = from_environment()


@rocketman_core.on_event("bench.event", name=os.environ["BENCH_SUBSCRIPTION"])
def handle(payload: Any) -> None:
    """The trivial handler: count the event."""
    _tally()
