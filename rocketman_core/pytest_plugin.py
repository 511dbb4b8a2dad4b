"""The pytest plugin of rocketman (entry point ``pytest11``), with its fixture.

* ``rocketman_app``: a fresh, isolated runtime for one test, with its own
  consumers and memory storage, the ``inline`` executor (so ``emit`` returns
  after the consumers ran), and a record of what was emitted. It starts with
  the consumers your modules registered at import (your application's); the
  ones a test registers stay in that test. While the test runs it is the
  current runtime: ``rocketman.emit`` and ``@rocketman.on_event`` use it.

Fixtures of a backend's server come from its own distribution (the core names
no backend): ``rocketman_redis_server`` from rocketman-relay-redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import rocketman_core

from ._config import Settings
from ._envelope import Event
from ._hookspecs import hookimpl
from ._runtime import Rocketman

__all__ = ["RecordingRocketman", "rocketman_app"]


class RecordingRocketman(Rocketman):
    """A runtime that keeps every event emitted through it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.emitted: list[Event] = []
        self.register_plugin(self, name="rocketman-pytest-recorder")

    @hookimpl
    def rocketman_event_emitted(self, event: Event) -> None:
        self.emitted.append(event)

    def emitted_names(self) -> list[str]:
        """The names of the events emitted so far, in order."""
        return [event.name for event in self.emitted]

    def payloads(self, name: str) -> list[Any]:
        """The payloads of the events named ``name`` emitted so far."""
        return [event.payload for event in self.emitted if event.name == name]


@pytest.fixture
def rocketman_app() -> Iterator[RecordingRocketman]:
    """A fresh, isolated rocketman runtime for one test (memory + inline)."""
    app = RecordingRocketman()
    # The default storage (memory), whatever ROCKETMAN_STORAGE says: a test's own.
    app.configure(storage=Settings().storage, executor="inline")
    for spec in rocketman_core.current().consumers.all():
        for pattern in spec.patterns:
            app.consumers.add(pattern, spec.function, spec.owner, name=spec.name, start=spec.start)
    with rocketman_core.using(app):
        yield app
    app.shutdown(timeout=5)

