"""redis-server stopped and restarted under load: no accepted event lost, the worker resumes alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rocketman_redis import StorageUnavailable
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman

if TYPE_CHECKING:
    from conftest import SharedQueue, WorkerProcesses


@pytest.fixture
def redis_restartable_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, append-only (fsync always), that the test stops."""
    with RedisServer(appendonly=True) as server:
        yield server


class Producer(threading.Thread):
    """Emits one event after another until told to stop, retrying on StorageUnavailable."""

    def __init__(self, app: Rocketman, number: int) -> None:
        super().__init__(name=f"rocketman-test-producer-{number}", daemon=True)
        self.app = app
        self.number = number
        self.accepted: list[str] = []  # ids of the events emit returned for
        self.refused = 0
        self.slowest_refusal = 0.0
        self.refusal = ""
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        sequence = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.accepted.append(self.app.emit("load.restart", {"p": self.number, "n": sequence}))
                    sequence += 1
                except StorageUnavailable as error:
                    self.refused += 1
                    self.refusal = str(error)
                    self.slowest_refusal = max(self.slowest_refusal, time.monotonic() - started)
                    self.stopping.wait(0.05)  # a producer's own back-off before it tries again
                else:
                    self.stopping.wait(0.002)  # a steady stream, not a flood
        except BaseException as error:  # reported by the test
            self.error = error


def test_redis_restart_loses_no_accepted_event_and_the_worker_resumes(
    redis_restartable_server: RedisServer, tmp_path: Path,
    redis_make_queue: Callable[..., SharedQueue],
    redis_make_workers: Callable[[SharedQueue], WorkerProcesses],
    redis_wait_for: Any,
) -> None:
    """Producers and a worker run; Redis stops and restarts; every accepted event is handled."""
    server = redis_restartable_server
    queue = redis_make_queue(server, tmp_path, lease=2, connect_timeout=0.5, socket_timeout=1)
    workers = redis_make_workers(queue)
    worker = workers.start()
    app = Rocketman()
    app.configure(storage=queue.url, worker_count=0)
    producers = [Producer(app, number) for number in range(3)]
    for producer in producers:
        producer.start()
    try:
        def accepted() -> int:
            return sum(len(p.accepted) for p in producers)

        redis_wait_for(lambda: accepted() >= 300, 30, lambda: f"only {accepted()} events accepted")
        server.stop()
        # Down long enough that every producer was refused a few times and
        # the worker noticed.
        redis_wait_for(lambda: all(p.refused >= 3 for p in producers), 30,
                       lambda: "a producer's emit was never refused while Redis was down")
        redis_wait_for(lambda: "the storage failed to give work" in worker.log(), 30,
                       lambda: f"the worker never noticed Redis was gone:\n{worker.log()}")
        server.start()
        resumed_at = [len(p.accepted) for p in producers]
        redis_wait_for(lambda: all(len(p.accepted) >= at + 100 for p, at in zip(producers, resumed_at,
                                                                           strict=True)),
                       30, lambda: "the producers did not get through after the restart")
    finally:
        for producer in producers:
            producer.stopping.set()
        for producer in producers:
            producer.join(10)
    assert not [p.error for p in producers if p.error], [p.error for p in producers]

    ids = {event_id for p in producers for event_id in p.accepted}
    workers.wait_all_handled(ids, 60)
    assert worker.process.poll() is None, "the worker died when Redis went away"
    assert "gives work again" in worker.log(), "the worker did not say it recovered"
    # The refusal is clear, bounded (2 x (connect 0.5 s + read 1 s) at worst) and masked.
    refusal = next(p.refusal for p in producers if p.refusal)
    assert "unreachable" in refusal and f"127.0.0.1:{server.port}" in refusal, refusal
    slowest = max(p.slowest_refusal for p in producers)
    assert slowest < 4.0, f"an emit took {slowest:.1f}s to fail while Redis was down"
    assert worker.terminate() == 0, worker.log()[-3000:]
    app.shutdown(timeout=5)
