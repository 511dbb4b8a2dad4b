"""A storage's optional members are read once, checked when it is configured, and may be absent."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
from rocketman_memory import MemoryStorage

import rocketman_core
from rocketman_core import STORAGE_CONTRACT, ConfigurationError, Rocketman, storage_features

CORE = Path(rocketman_core.__file__).parent
OPTIONAL = ("durable", "renew_interval", "release", "interrupt", "backlog_bytes", "ack_and_reserve",
            "synchronous")


class Plain:
    """The required contract only: a MemoryStorage behind the methods Storage lists, nothing optional."""

    contract_version = STORAGE_CONTRACT

    def __init__(self) -> None:
        self.inner = MemoryStorage()


for _name in ("subscribe", "keep_alive", "leave", "unsubscribe", "subscriptions", "push", "push_many",
              "reserve", "ack", "renew", "retry_later", "dead_letter", "dead_letters",
              "replay_dead_letters", "purge_dead_letters", "stats", "close"):
    setattr(Plain, _name, lambda self, *args, _name=_name, **kwargs: getattr(self.inner, _name)(*args, **kwargs))


@pytest.mark.parametrize(("member", "value", "message"), [
    ("durable", "yes", r"durable='yes': it must be True or False"),
    ("renew_interval", 0, r"renew_interval=0: it must be a positive number of seconds"),
    ("renew_interval", float("inf"), r"renew_interval=inf"),
    ("release", 5, r"release=5: it must be a method"),
    ("interrupt", "now", r"interrupt='now': it must be a method"),
    ("ack_and_reserve", 1, r"ack_and_reserve=1: it must be a method"),
    ("push_async", lambda self, name, message: None,
     r"push_async=.*: it must be an async def method \(or both push_async and push_many_async"),
])
def test_a_malformed_optional_member_fails_at_configure_naming_it(member: str, value: Any, message: str) -> None:
    odd = type("Odd", (MemoryStorage,), {member: value})()
    with pytest.raises(ConfigurationError, match=message):
        Rocketman().configure(storage=odd)
    odd.close()


def test_a_storage_with_no_optional_member_runs_events_and_shuts_down() -> None:
    storage = Plain()
    assert storage_features(storage) == (False, None, None, None, None, None, None, None)  # type: ignore[arg-type]
    app = Rocketman()
    app.configure(storage=storage, worker_count=2, latency=0.1)
    seen: list[Any] = []
    done = threading.Event()

    @app.on_event("plain.*", name="plain")
    def record(payload: Any) -> None:
        seen.append(payload)
        if len(seen) == 20:
            done.set()

    app.emit_many([("plain.one", n) for n in range(20)])
    assert done.wait(10) and app.drain(timeout=10)
    assert sorted(seen) == list(range(20))
    assert app.shutdown(timeout=5)


def test_the_features_of_our_storages_are_what_they_declare() -> None:
    memory = storage_features(MemoryStorage())
    assert not memory.durable and memory.renew_interval is None
    assert memory.release is not None and memory.interrupt is not None and memory.backlog_bytes is not None


def test_the_core_reads_optional_members_through_their_protocols_only() -> None:
    """No getattr(storage, "durable", ...) left: each member is read once, in storage_features()."""
    members = "|".join(OPTIONAL)
    read = re.compile(rf"getattr\([^)]*[\"']({members})[\"']")
    found = [f"{path.relative_to(CORE)}:{number}: {line.strip()}"
             for path in sorted(CORE.rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if read.search(line)]
    assert not found, "optional members read with getattr:\n" + "\n".join(found)


class Piggybacking(MemoryStorage):
    """A storage that acknowledges with its next reserve, counting how the worker uses it."""

    def __init__(self) -> None:
        super().__init__()
        self.piggybacked = 0
        self.acked_alone = 0

    def ack_and_reserve(self, done: Any, subscriptions: Any, timeout: float, max_count: int = 1) -> Any:
        self.piggybacked += len(done)
        super().ack(done)
        return self.reserve(subscriptions, timeout, max_count)

    def ack(self, deliveries: Any) -> None:
        self.acked_alone += len(deliveries)
        super().ack(deliveries)


def test_a_worker_acknowledges_with_its_next_reserve_and_its_last_batch_when_it_stops() -> None:
    """With ack_and_reserve, a batch's acks ride on the next reserve; drain and stop still see them."""
    storage = Piggybacking()
    app = Rocketman()
    app.configure(storage=storage, worker_count=1, latency=0.1, batch_size=10)
    seen: list[Any] = []

    @app.on_event("pig.*", name="pig")
    def record(payload: Any) -> None:
        seen.append(payload)

    app.emit_many([("pig.one", n) for n in range(50)])
    assert app.drain(timeout=10), "drain must see the acks of the last batch"
    assert sorted(seen) == list(range(50)) and app.stats()["reserved"] == 0
    assert storage.piggybacked > 0, "the worker never acknowledged with its next reserve"
    app.emit("pig.last", 50)
    assert app.shutdown(timeout=5)
    assert storage.piggybacked + storage.acked_alone == 51 and seen[-1] == 50
