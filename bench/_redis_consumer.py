"""The consumer module that ``rocketman worker`` imports in the Redis end-to-end benchmark."""

from __future__ import annotations

from typing import Any

import rocketman_core

from ._tally import from_environment

_tally = from_environment()


@rocketman_core.on_event("bench.event")
def handle(payload: Any) -> None:
    """The trivial handler: count the event."""
    _tally()
