"""rocketman's relay conformance kit, run against the NATS relay and a real NATS server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rocketman_nats import NatsRelay

from rocketman_core.testing import RelayContract


class TestNatsRelayContract(RelayContract):
    """The promises of ``rocketman_core.Relay``, kept by ``NatsRelay``.

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
