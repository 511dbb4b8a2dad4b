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
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rocketman_nats import NatsRelay

from rocketman_core.testing import EmitRecorder, ServerMissing, ServerProcess

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
        try:
            self._client = self._call(nats.connect(url, allow_reconnect=False, connect_timeout=2))
        except BaseException:
            self._end_loop()  # no thread left behind by a server that is not there
            raise

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
            self._end_loop()

    def _end_loop(self) -> None:
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


@pytest.fixture
def nats_recorders() -> Callable[[], EmitRecorder]:
    """``nats_recorders()`` makes a fresh recording ``emit`` (the core's ``EmitRecorder``)."""
    return EmitRecorder


@pytest.fixture
def nats_emitted() -> EmitRecorder:
    """A fresh recording ``emit``."""
    return EmitRecorder()


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


class NatsServerProcess(ServerProcess):
    """A ``nats-server`` of a test's own, on a free port, that the test may kill and restart."""

    def __init__(self, binary: str) -> None:
        super().__init__(binary, ["-a", "{host}", "-p", "{port}"], host=NATS_HOST,
                         install_hint="apt-get install nats-server")

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://{self.host}:{self.port}"

    def ready(self) -> bool:
        """Whether the server greets a connection with its ``INFO``."""
        return nats_answers(self.host, self.port, timeout=0.2) is None


def make_nats_server() -> NatsServerProcess:
    """A ``nats-server`` of the caller's own, not started yet; fails the test if none is installed."""
    binary = (shutil.which("nats-server")
              or shutil.which("nats-server", path="/usr/sbin:/usr/local/bin") or "nats-server")
    try:
        return NatsServerProcess(binary)
    except ServerMissing as missing:
        pytest.fail(f"{missing} rocketman-nats's tests need it.", pytrace=False)


@pytest.fixture
def nats_server_process() -> Iterator[NatsServerProcess]:
    """A ``nats-server`` of the test's own, not started yet; killed after the test."""
    server = make_nats_server()
    yield server
    server.kill()
    server.close()
