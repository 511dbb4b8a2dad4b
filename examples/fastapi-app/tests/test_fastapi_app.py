"""The FastAPI example, served by a real uvicorn, driven by real HTTP requests.

Memory mode: the consumers run inside the uvicorn process. Redis mode: the
same code, configured by environment only; uvicorn only emits and a
``rocketman worker app`` process consumes. Both processes record what the
consumers did in the receipts file (one JSON line per handling), which the
tests read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rocketman_redis import KeyLayout
from rocketman_relay_redis.testing import RedisServer

from rocketman_core.testing import free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[1]
#: The console script of the environment running the tests.
ROCKETMAN = str(Path(sys.executable).with_name("rocketman"))
CONSUMERS = ("send_receipt", "book_sale")
ORDERS = 100
#: How uvicorn exits on SIGTERM once it shut down cleanly: it re-raises the
#: signal (since 0.29; 0 before), so that its parent sees why it ended.
STOPPED = (0, -signal.SIGTERM)


class Process:
    """A subprocess started in the example's folder, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_file: Path) -> None:
        self.log_file = log_file
        self._log = open(log_file, "wb")  # noqa: SIM115 - open for the life of the process
        self.popen = subprocess.Popen(args, cwd=EXAMPLE, env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        """Wait for ``condition()``; fail early, with the log, if the process exits first."""
        wait_until(lambda: condition() or self.popen.poll() is not None, timeout,
                   lambda: f"{what}; log:\n{self.log()[-3000:]}", interval=0.05)
        assert self.popen.poll() is None, (f"exited ({self.popen.returncode}) before {what}:\n"
                                           f"{self.log()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, and the exit code once it stopped; SIGKILL (and fail) after ``timeout``."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"did not stop within {timeout}s of SIGTERM:\n"
                                 f"{self.log()[-3000:]}") from None

    def close(self) -> None:
        """Kill it if a failed test left it running."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._log.close()


class Shop:
    """The example's processes of one test, and the receipts file they share."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.receipts_file = directory / "receipts.log"
        self.processes: list[Process] = []
        self.url = ""

    def env(self, **settings: str) -> dict[str, str]:
        """The tests' environment without its ROCKETMAN_*, plus ``settings``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKETMAN_")}
        env.update(RECEIPTS_FILE=str(self.receipts_file), **settings)
        return env

    def start_web(self, **settings: str) -> Process:
        """``python -m uvicorn app:app`` on a free port; returns once /health answers."""
        port = free_port()
        web = Process([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
                       "--port", str(port), "--no-access-log"],
                      self.env(**settings), self.directory / "uvicorn.log")
        self.processes.append(web)
        self.url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        web.wait_for(healthy, "uvicorn did not answer /health")
        return web

    def start_worker(self, **settings: str) -> Process:
        """``rocketman worker app``; returns once it logged its start line."""
        worker = Process([ROCKETMAN, "worker", "app"], self.env(**settings),
                         self.directory / "worker.log")
        self.processes.append(worker)
        worker.wait_for(lambda: "rocketman worker started" in worker.log(),
                        "the worker did not log its start line")
        return worker

    def place_orders(self, count: int) -> list[str]:
        """POST ``count`` orders at once; the event ids the endpoint returned."""
        async def post_all() -> list[str]:
            async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
                responses = await asyncio.gather(*(
                    client.post("/orders", json={"item": f"book-{n}", "quantity": 1})
                    for n in range(count)))
            for response in responses:
                assert response.status_code == 202, response.text
            return [response.json()["event_id"] for response in responses]

        ids = asyncio.run(post_all())
        assert len(set(ids)) == count
        return ids

    def records(self) -> list[dict[str, Any]]:
        """The receipts file's records, read directly (whatever process wrote them)."""
        if not self.receipts_file.exists():
            return []
        return [json.loads(line) for line in self.receipts_file.read_text().splitlines()]

    def close(self) -> None:
        for process in self.processes:
            process.close()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    shop = Shop(tmp_path)
    yield shop
    shop.close()


def handlings(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """How many times each consumer handled each event id."""
    return Counter((record["consumer"], record["event_id"]) for record in records)


def every_consumer_ran(records: list[dict[str, Any]], ids: list[str]) -> bool:
    handled = set(handlings(records))
    return all((consumer, event_id) in handled for consumer in CONSUMERS for event_id in ids)


def assert_each_ran_exactly_once(records: list[dict[str, Any]], ids: list[str]) -> None:
    expected = Counter({(consumer, event_id): 1 for consumer in CONSUMERS for event_id in ids})
    counted = handlings(records)
    missing = expected - counted
    extra = counted - expected
    assert not missing and not extra, (
        f"{len(missing)} handlings missing, {len(extra)} extra; "
        f"missing e.g. {list(missing)[:3]}, extra e.g. {list(extra)[:3]}")


def test_memory_mode_runs_the_consumers_in_the_web_process(shop: Shop) -> None:
    web = shop.start_web()
    ids = shop.place_orders(ORDERS)

    # What the endpoint shows is what the test asserts on.
    def shown() -> list[dict[str, Any]]:
        return httpx.get(f"{shop.url}/receipts", timeout=5).json()

    wait_until(lambda: every_consumer_ran(shown(), ids), 10,
               lambda: f"{len(shown())} of {2 * ORDERS} handlings shown by GET /receipts")
    assert web.stop() in STOPPED, web.log()
    # Read once the process is gone: nothing ran twice, even late.
    records = shop.records()
    assert_each_ran_exactly_once(records, ids)
    assert {record["pid"] for record in records} == {web.pid}
    assert "WARNING" not in web.log(), web.log()


@pytest.fixture
def redis_storage_url(rocketman_redis_server: RedisServer) -> Iterator[str]:
    """The session's redis-server, in a namespace of this test's; its keys deleted afterwards."""
    namespace = f"fastapi-{uuid.uuid4().hex[:12]}"
    yield f"{rocketman_redis_server.url}?namespace={namespace}"
    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        keys = list(client.scan_iter(match=KeyLayout(namespace).pattern, count=1000))
        if keys:
            client.delete(*keys)


def test_redis_mode_the_web_process_emits_and_a_worker_consumes(
        shop: Shop, redis_storage_url: str) -> None:
    web = shop.start_web(ROCKETMAN_STORAGE=redis_storage_url, ROCKETMAN_WORKER_COUNT="0")
    # Orders placed before any worker runs wait in Redis (parked: no
    # subscription exists yet), and reach the worker's once it starts.
    ids = shop.place_orders(ORDERS // 2)
    worker = shop.start_worker(ROCKETMAN_STORAGE=redis_storage_url)
    ids += shop.place_orders(ORDERS - ORDERS // 2)

    wait_until(lambda: every_consumer_ran(shop.records(), ids), 15,
               lambda: f"{len(shop.records())} of {2 * ORDERS} handlings recorded; "
                       f"worker's log:\n{worker.log()[-3000:]}")
    assert web.stop() in STOPPED, web.log()
    assert worker.stop() == 0, worker.log()
    records = shop.records()
    # Redis delivers at least once: an event goes back to the queue when a
    # worker dies holding it, or when a consumer outlives its lease (30 s).
    # Neither happens here, so a second handling would be a bug: exactly once.
    assert_each_ran_exactly_once(records, ids)
    assert {record["pid"] for record in records} == {worker.pid}, "the web process consumed"
    assert "WARNING" not in worker.log(), worker.log()


def test_memory_mode_a_graceful_shutdown_handles_what_was_emitted(shop: Shop) -> None:
    # Each receipt takes 2 s to mail: SIGTERM comes while all are in flight.
    web = shop.start_web(MAIL_SECONDS="2")
    ids = shop.place_orders(ORDERS)
    mailed = sum(record["consumer"] == "send_receipt" for record in shop.records())
    assert web.stop() in STOPPED, web.log()
    assert mailed < ORDERS, "every receipt was mailed before SIGTERM: the test proves nothing"
    assert_each_ran_exactly_once(shop.records(), ids)
    assert "WARNING" not in web.log(), web.log()


def test_memory_mode_a_shutdown_out_of_time_counts_what_it_left(shop: Shop) -> None:
    # The receipts would take 30 s; shutdown gives them 1 s, then cancels them.
    web = shop.start_web(MAIL_SECONDS="30", ROCKETMAN_SHUTDOWN_TIMEOUT="1")
    ids = shop.place_orders(ORDERS)
    assert web.stop() in STOPPED, web.log()
    records = shop.records()
    # The sales were booked (a plain consumer, done at once); no receipt was
    # mailed, and the WARNING counts every event whose receipt is lost.
    assert handlings(records) == Counter({("book_sale", event_id): 1 for event_id in ids})
    lost = re.search(r"rocketman stopped with (\d+) events? not handled, now lost", web.log())
    assert lost is not None, web.log()
    assert int(lost.group(1)) == ORDERS, web.log()
