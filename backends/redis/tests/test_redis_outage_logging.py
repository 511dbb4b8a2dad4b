"""A Redis outage in the log: one line when it starts, one when it ends, per process (hardening)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman


@pytest.fixture
def redis_stoppable_server() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:  # it keeps the subscriptions across the restart
        yield server


def test_an_outage_is_one_error_line_when_it_starts_and_one_warning_when_it_ends(
    redis_stoppable_server: RedisServer, redis_wait_for: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """5 workers, a 3 s outage: not a line per worker per attempt, but one when it starts and one when it ends."""
    app = Rocketman()
    app.configure(storage=f"{redis_stoppable_server.url}?socket_timeout=0.5&connect_timeout=0.5",
                  worker_count=5, latency=0.5)
    handled = threading.Event()
    app.on_event("ping", name="ping")(lambda payload: handled.set())
    app.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="rocketman"):
            redis_stoppable_server.stop()
            redis_wait_for(lambda: app._worker.outage.down, 10, lambda: "the workers never saw the outage")
            # Let every worker fail several times over (backing off up to a few seconds).
            redis_wait_for(lambda: app._worker.outage._failures >= 15, 20,
                           lambda: f"only {app._worker.outage._failures} failed attempts")
            redis_stoppable_server.start()
            redis_wait_for(lambda: not app._worker.outage.down, 20, lambda: "the workers never saw Redis back")
            app.emit("ping")
            assert handled.wait(10), "the workers did not resume"
    finally:
        app.shutdown(timeout=5)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING and "storage" in r.getMessage()]
    messages = [r.getMessage() for r in records]
    started = [r for r in records if "failed to give work" in r.getMessage()]
    ended = [r for r in records if "gives work again" in r.getMessage()]
    assert len(started) == 1 and started[0].levelno == logging.ERROR, messages
    assert len(ended) == 1, messages
    assert "failed attempts" in ended[0].getMessage(), ended[0].getMessage()
    assert len(records) == 2, f"more than two lines for one outage: {messages}"
