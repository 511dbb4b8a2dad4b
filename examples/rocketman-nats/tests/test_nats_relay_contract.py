"""rocketman's relay conformance kit, run against the NATS relay and real NATS servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rocketman_nats import NatsRelay

from rocketman_core.testing import RelayContract, RelayRestartContract

# conftest.py's classes reach the tests as fixtures (--import-mode=importlib).
NatsServerProcess = Any


class TestNatsRelayContract(RelayContract):
    """The promises of ``rocketman_core.Relay``, kept by ``NatsRelay``, on the shared server.

    Each test gets a subject prefix of its own: the relay listens under it and
    strips it, so the kit's event ``rocketman.contract`` is the subject
    ``<prefix>.rocketman.contract``.
    """

    @pytest.fixture
    def relay(self, nats_url: str, nats_subject_root: str) -> NatsRelay:
        return NatsRelay(url=nats_url, subjects=f"{nats_subject_root}.>",
                         prefix=f"{nats_subject_root}.")

    @pytest.fixture
    def publish(self, nats_publisher: Any, nats_subject_root: str) -> Callable[[str, str], None]:
        # nats_publisher's thread is already running: the kit counts threads
        # from here on to find what the relay leaves behind.
        def publish(name: str, text: str) -> None:
            nats_publisher.publish(f"{nats_subject_root}.{name}", text)

        return publish


class TestNatsRelayRestartContract(RelayRestartContract):
    """The same promises, and the outage ones, on a ``nats-server`` of each test's own.

    The shared server on 127.0.0.1:4222 is never stopped: these tests stop
    and restart one of their own, on a free port.
    """

    @pytest.fixture
    def own_nats_server(self, nats_server_process: NatsServerProcess) -> NatsServerProcess:
        nats_server_process.start()
        return nats_server_process

    @pytest.fixture
    def relay(self, own_nats_server: NatsServerProcess) -> NatsRelay:
        # Quick reconnection, so that the outage tests take a test's time.
        return NatsRelay(url=own_nats_server.url, subjects="kit.>", prefix="kit.",
                         reconnect_wait="0.2", connect_timeout="0.5")

    @pytest.fixture
    def publish(
        self, own_nats_server: NatsServerProcess, nats_publishers: Callable[[str], Any]
    ) -> Iterator[Callable[[str, str], None]]:
        # The test publisher does not reconnect: after a failure (the server
        # went away) the next call connects anew. Connected now, so that its
        # thread runs before the kit counts threads.
        current: list[Any] = [nats_publishers(own_nats_server.url)]

        def publish(name: str, text: str) -> None:
            if not current:
                current.append(nats_publishers(own_nats_server.url))
            try:
                current[0].publish(f"kit.{name}", text)
            except Exception:
                current.pop().close()
                raise

        yield publish

    @pytest.fixture
    def restart_server(self, own_nats_server: NatsServerProcess) -> Callable[[], None]:
        return own_nats_server.restart

    @pytest.fixture
    def stop_server(self, own_nats_server: NatsServerProcess) -> Callable[[], None]:
        return own_nats_server.stop
