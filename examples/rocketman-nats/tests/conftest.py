"""Fixtures for rocketman-nats's tests: the real NATS server, a publisher, a recorder.

Test modules are imported with ``--import-mode=importlib`` and cannot import
this module: everything here reaches them through fixtures.

Every test talks to a real ``nats-server``: the one on 127.0.0.1:4222, or, for
tests that kill and restart a server, one of their own on a free port. A
missing server is a failure that says how to start one, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rocketman_nats import NatsRelay

from rocketman_core.testing import free_port

NATS_HOST = "127.0.0.1"
NATS_PORT = 4222
START_HINT = f"nats-server -a {NATS_HOST} -p {NATS_PORT} -js"


def nats_answers(host: str, port: int, timeout: float = 1.0) -> str | None:
    """None when a NATS server answers on host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            greeting = connection.recv(4096)
    except OSError as error:
        return str(error)
    if not greeting.startswith(b"INFO "):
        return f"something answers there, but not NATS: {greeting[:40]!r}"
    return None


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The URL of the NATS server on 127.0.0.1:4222; fails the test if there is none."""
    problem = nats_answers(NATS_HOST, NATS_PORT)
    if problem:
        pytest.fail(
            f"no NATS server on {NATS_HOST}:{NATS_PORT} ({problem}). rocketman-nats's tests "
            f"need one: start it with `{START_HINT}`",
            pytrace=False,
        )
    return f"nats://{NATS_HOST}:{NATS_PORT}"


@pytest.fixture
def nats_subject_root() -> str:
    """A subject prefix no other test, nor a parallel run, publishes under."""
    return f"rmtest.{os.getpid()}.{uuid.uuid4().hex[:12]}"


class NatsTestPublisher:
    """A blocking NATS publisher for tests: nats-py on an event loop of its own thread.

    The thread starts when the publisher is built. Each publish is flushed
    (a round trip), so when it returns the server has routed the message.
    """

    def __init__(self, url: str) -> None:
        import nats

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nats-test-publisher", daemon=True
        )
        self._thread.start()
        self._client = self._call(nats.connect(url, allow_reconnect=False, connect_timeout=2))

    def _call(self, coroutine: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def publish(self, subject: str, data: bytes | str) -> None:
        """Publish ``data`` (text is UTF-8 encoded) on ``subject`` and flush."""
        body = data.encode() if isinstance(data, str) else data
        self._call(self._publish(subject, body))

    async def _publish(self, subject: str, body: bytes) -> None:
        await self._client.publish(subject, body)
        await self._client.flush(timeout=5)

    def close(self) -> None:
        """Close the connection and end the thread. Idempotent."""
        if self._loop.is_closed():
            return
        try:
            if not self._client.is_closed:
                self._call(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


@pytest.fixture
def nats_publishers() -> Iterator[Callable[[str], NatsTestPublisher]]:
    """``nats_publishers(url)`` connects a new publisher; each is closed after the test."""
    opened: list[NatsTestPublisher] = []

    def connect(url: str) -> NatsTestPublisher:
        publisher = NatsTestPublisher(url)
        opened.append(publisher)
        return publisher

    yield connect
    for publisher in opened:
        publisher.close()


@pytest.fixture
def nats_publisher(
    nats_url: str, nats_publishers: Callable[[str], NatsTestPublisher]
) -> NatsTestPublisher:
    """A publisher connected to the NATS server on 127.0.0.1:4222."""
    return nats_publishers(nats_url)


class EmittedEvents:
    """An ``emit(name, payload)`` for relays under test that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._changed = threading.Condition()

    def __call__(self, name: str, payload: Any) -> None:
        with self._changed:
            self.calls.append((name, payload))
            self._changed.notify_all()

    def wait_for_count(self, count: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        """The calls, once there are at least ``count``; fails after ``timeout`` seconds."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.calls) >= count, timeout)
            assert arrived, f"{len(self.calls)} events emitted in {timeout}s, expected {count}"
            return list(self.calls)


@pytest.fixture
def nats_recorders() -> Callable[[], EmittedEvents]:
    """``nats_recorders()`` makes a fresh recording ``emit``."""
    return EmittedEvents


@pytest.fixture
def nats_emitted() -> EmittedEvents:
    """A fresh recording ``emit``."""
    return EmittedEvents()


@pytest.fixture
def nats_relays() -> Iterator[Callable[..., NatsRelay]]:
    """Build relays with ``nats_relays(**options)``; each is stopped after the test."""
    built: list[NatsRelay] = []

    def build(**options: Any) -> NatsRelay:
        relay = NatsRelay(**options)
        built.append(relay)
        return relay

    yield build
    for relay in built:
        relay.stop(timeout=5)


class NatsServerProcess:
    """A ``nats-server`` of a test's own, on a free port, that the test may kill and restart."""

    def __init__(self, binary: str, log_dir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"nats://{NATS_HOST}:{self.port}"
        self.log = log_dir / "nats-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-a", NATS_HOST, "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while nats_answers(NATS_HOST, self.port, timeout=0.2) is not None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"nats-server on port {self.port} did not start:\n{self.log.read_text()}"
                )
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def nats_server_process(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A ``nats-server`` of the test's own, not started yet; killed after the test."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/bin")
    if binary is None:
        pytest.fail("nats-server is not installed; install it (apt-get install nats-server) "
                    "to run rocketman-nats's tests", pytrace=False)
    server = NatsServerProcess(binary, tmp_path)
    yield server
    server.kill()
