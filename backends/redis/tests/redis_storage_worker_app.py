"""The consumers the worker-process tests run with ``rocketman worker redis_storage_worker_app``.

Every handling appends one line ``<event id> <pid>`` to the file named by
``ROCKETMAN_TEST_EVENTS_FILE``, with one ``os.write`` on a file opened with
``O_APPEND``: the line is in the file (the kernel's) as soon as the call
returns, so a SIGKILL right after loses nothing written, and lines of
concurrent threads never interleave. ``ROCKETMAN_TEST_HANDLE_SECONDS`` makes
each handling take that long (to kill a worker in the middle of a run).
"""

from __future__ import annotations

import os
import time
from typing import Any

import rocketman_core as rocketman

_EVENTS = os.open(os.environ["ROCKETMAN_TEST_EVENTS_FILE"],
                  os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_PID = os.getpid()
_SECONDS = float(os.environ.get("ROCKETMAN_TEST_HANDLE_SECONDS", "0") or 0)


@rocketman.on_event("load.*")
def record(payload: Any, event: rocketman.Event) -> None:
    """Record that this process handled ``event``."""
    if _SECONDS:
        time.sleep(_SECONDS)  # the work a real handler would do
    os.write(_EVENTS, f"{event.id} {_PID}\n".encode())
