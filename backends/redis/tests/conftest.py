"""Fixtures of the Redis storage's tests, on the session's redis-server.

Tests import nothing from here (pytest runs with ``--import-mode=importlib``):
what they need reaches them as fixtures. Each test works in a namespace of
its own, so tests share the server but never a key.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from rocketman_redis import KeyLayout, RedisStorage
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman

TESTS = Path(__file__).parent
#: The console script of the environment running the tests.
ROCKETMAN = str(Path(sys.executable).with_name("rocketman"))


def fresh_namespace() -> str:
    """A namespace no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


def delete_namespace(client: redis.Redis, keys: KeyLayout) -> None:
    """Delete every key of a namespace (its subscriptions' keys included)."""
    found = list(client.scan_iter(match=keys.pattern, count=1000))
    if found:
        client.delete(*found)


def wait_for(condition: Callable[[], bool], timeout: float, failure: Callable[[], str],
             interval: float = 0.02) -> None:
    """Return once ``condition()`` holds; fail with ``failure()`` (computed then) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{failure()} (waited {timeout}s)")
        time.sleep(interval)


@pytest.fixture
def redis_delete_namespace() -> Callable[[redis.Redis, KeyLayout], None]:
    """``delete(client, keys)``: delete every key of a namespace, for tests that build storages by hand."""
    return delete_namespace


@pytest.fixture
def redis_wait_for() -> Callable[..., None]:
    """``wait_for(condition, timeout, failure)``: poll a condition within a deadline."""
    return wait_for


@pytest.fixture
def redis_storage_factory(
    rocketman_redis_server: RedisServer,
) -> Iterator[Callable[..., RedisStorage]]:
    """Build RedisStorages on the session's server, each on a fresh namespace unless given one.

    Everything they made is closed and their keys deleted afterwards.
    """
    made: list[RedisStorage] = []

    def make(**options: Any) -> RedisStorage:
        options.setdefault("url", rocketman_redis_server.url)
        options.setdefault("namespace", fresh_namespace())
        storage = RedisStorage(**options)
        made.append(storage)
        return storage

    yield make
    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        for storage in made:
            storage.close()
            delete_namespace(client, storage.keys)


@pytest.fixture
def redis_storage(redis_storage_factory: Callable[..., RedisStorage]) -> RedisStorage:
    """A fresh, empty RedisStorage on its own namespace of the session's server."""
    return redis_storage_factory()


@pytest.fixture
def redis_raw(rocketman_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client of the session's server, to look at keys or write them by hand."""
    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        yield client


# -- worker processes ---------------------------------------------------------


@dataclass(frozen=True)
class SharedQueue:
    """The queue of one test: its storage URL (1 s lease), its keys, the consumers' record."""

    url: str
    keys: KeyLayout
    events_file: Path

    def handled(self) -> Counter[str]:
        """How many times each event id was handled, from the consumers' lines."""
        if not self.events_file.exists():
            return Counter()
        return Counter(line.split(" ", 1)[0] for line in self.events_file.read_text().splitlines()
                       if line.count(" ") == 1)

    def handled_by(self) -> Counter[str]:
        """How many handlings each process (by pid) did."""
        return Counter(line.split(" ", 1)[1] for line in self.events_file.read_text().splitlines()
                       if line.count(" ") == 1)


@pytest.fixture
def redis_make_queue() -> Iterator[Callable[..., SharedQueue]]:
    """``make(server, directory, **options)``: a fresh namespace's queue (1 s lease) on ``server``.

    ``options`` go into the storage URL's query string. Keys are deleted
    afterwards (when the server still runs).
    """
    made: list[tuple[RedisServer, KeyLayout]] = []

    def make(server: RedisServer, directory: Path, **options: Any) -> SharedQueue:
        namespace = fresh_namespace()
        query = "&".join(f"{key}={value}" for key, value in {"lease": 1, **options}.items())
        made.append((server, KeyLayout(namespace)))
        return SharedQueue(f"{server.url}?namespace={namespace}&{query}", KeyLayout(namespace),
                           directory / f"events-{namespace}.log")

    yield make
    for server, keys in made:
        if server.ping():
            with redis.Redis.from_url(server.url) as client:
                delete_namespace(client, keys)


@pytest.fixture
def redis_queue(rocketman_redis_server: RedisServer, tmp_path: Path,
                redis_make_queue: Callable[..., SharedQueue]) -> SharedQueue:
    """A fresh namespace's queue on the session's server (1 s lease)."""
    return redis_make_queue(rocketman_redis_server, tmp_path)


@pytest.fixture
def redis_producer(redis_queue: SharedQueue) -> Iterator[Rocketman]:
    """A producer-only runtime (``worker_count=0``) on the test's queue, as a web process has."""
    app = Rocketman()
    app.configure(storage=redis_queue.url, worker_count=0)
    yield app
    app.shutdown(timeout=5)


class WorkerProcess:
    """One ``rocketman worker redis_storage_worker_app`` process, logging to a file."""

    def __init__(self, storage_url: str, events_file: Path, log_file: Path, *,
                 workers: int = 5, handle_seconds: float = 0.0, latency: float = 0.5) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
        env.update({
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")])),
            "ROCKETMAN_TEST_EVENTS_FILE": str(events_file),
            "ROCKETMAN_TEST_HANDLE_SECONDS": str(handle_seconds),
        })
        self.log_file = log_file
        self._log = open(log_file, "ab")  # noqa: SIM115 - open for the life of the process
        self.process = subprocess.Popen(
            [ROCKETMAN, "worker", "redis_storage_worker_app", "--storage", storage_url,
             "--workers", str(workers), "--latency", str(latency)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=TESTS,
        )

    def log(self) -> str:
        """What the process logged so far."""
        return self.log_file.read_text(errors="replace")

    def wait_started(self, timeout: float = 20.0) -> None:
        """Wait for the start line (consumers imported, workers running)."""
        wait_for(lambda: "rocketman worker started" in self.log() or self.process.poll() is not None,
                 timeout, lambda: f"the worker process did not log its start line:\n{self.log()}")
        assert self.process.poll() is None, f"the worker exited at start:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, exactly like a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, and the exit code once the process stopped."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the worker did not stop within {timeout}s of SIGTERM:\n"
                                 f"{self.log()[-3000:]}") from None

    def close(self) -> None:
        """Kill the process if it still runs (a failed test), and close its log."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


class WorkerProcesses:
    """The worker processes of one test, all consuming the test's queue."""

    def __init__(self, queue: SharedQueue, directory: Path) -> None:
        self.queue = queue
        self.directory = directory
        self.started: list[WorkerProcess] = []

    def start(self, handle_seconds: float = 0.0, latency: float = 0.5) -> WorkerProcess:
        """Start a worker (5 threads) and wait for its start line."""
        worker = WorkerProcess(self.queue.url, self.queue.events_file,
                               self.directory / f"worker-{self.queue.keys.namespace}-{len(self.started) + 1}.log",
                               handle_seconds=handle_seconds, latency=latency)
        self.started.append(worker)
        worker.wait_started()
        return worker

    def wait_all_handled(self, ids: set[str], timeout: float) -> None:
        """Wait until every id in ``ids`` was handled at least once."""
        wait_for(lambda: ids <= set(self.queue.handled()), timeout,
                 lambda: f"{len(ids - set(self.queue.handled()))} of {len(ids)} events were never "
                         f"handled; last worker's log:\n{self.started[-1].log()[-3000:]}",
                 interval=0.05)

    def close(self) -> None:
        """Kill what still runs."""
        for worker in self.started:
            worker.close()


@pytest.fixture
def redis_make_workers(tmp_path: Path) -> Iterator[Callable[[SharedQueue], WorkerProcesses]]:
    """``make(queue)``: worker processes on ``queue``; killed if the test left them running."""
    made: list[WorkerProcesses] = []

    def make(queue: SharedQueue) -> WorkerProcesses:
        workers = WorkerProcesses(queue, tmp_path)
        made.append(workers)
        return workers

    yield make
    for workers in made:
        workers.close()


@pytest.fixture
def redis_workers(redis_queue: SharedQueue,
                  redis_make_workers: Callable[[SharedQueue], WorkerProcesses]) -> WorkerProcesses:
    """Start ``rocketman worker`` processes on the test's queue."""
    return redis_make_workers(redis_queue)
