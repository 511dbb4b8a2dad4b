"""A test plugin, shaped as a third party would ship one.

It provides the storage ``sample`` (the memory storage under another name,
with a ``label`` option) and the relay ``sample`` (emits ``count`` events
named ``sample.relayed`` from its own thread). Each storage built is kept in
:data:`built`, so a test can see which options reached the factory.
"""

from __future__ import annotations

import threading
from typing import Any

from rocketman_memory import MemoryStorage

import rocketman_core

__all__ = ["SampleRelay", "SampleStorage", "built", "register_relays", "register_storages"]

#: Every SampleStorage built in this process, in order.
built: list[SampleStorage] = []


class SampleStorage(MemoryStorage):
    """The memory storage, selected as ``sample`` or ``sample://?label=...``."""

    def __init__(self, label: str = "unlabelled", url: str | None = None, **options: Any) -> None:
        super().__init__(url=url, **options)
        self.label = label
        self.url = url
        built.append(self)


class SampleRelay:
    """Emits ``count`` events named ``sample.relayed``, payload ``{"n": i}``, then idles."""

    def __init__(self, count: int | str = 1, url: str | None = None) -> None:
        self.count = int(count)
        self._thread: threading.Thread | None = None

    def start(self, emit: rocketman_core.EmitFunction) -> None:
        """Emit the events from a thread of the relay's own, as a real relay would."""

        def run() -> None:
            for n in range(self.count):
                emit("sample.relayed", {"n": n})

        self._thread = threading.Thread(target=run, name="sample-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Wait for the relay's thread to end."""
        if self._thread is not None:
            self._thread.join(timeout)


@rocketman_core.hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``sample``."""
    register("sample", SampleStorage)


@rocketman_core.hookimpl
def register_relays(register: Any) -> None:
    """Provide the relay ``sample``."""
    register("sample", SampleRelay)
