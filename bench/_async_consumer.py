"""The consumer module that ``rocketman worker`` imports in the async section's Redis rows.

It subscribes :data:`~bench._async_handlers.SUBSCRIPTION` to ``bench.event``
with the handler of kind ``BENCH_CONSUMER`` (see
:data:`~bench._async_handlers.KINDS`), counted by the process's tally; the
in-flight bound of its async consumers comes from ``ROCKETMAN_ASYNC_CONCURRENCY``.
"""

from __future__ import annotations

import os

import rocketman_core

from ._async_handlers import SUBSCRIPTION, handler
from ._tally import from_environment

handle = rocketman_core.on_event("bench.event", name=SUBSCRIPTION)(
    handler(os.environ["BENCH_CONSUMER"], from_environment()))
