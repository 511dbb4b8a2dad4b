"""Delivery promises: exactly once in memory, per-consumer retries, dead letters, replay."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from rocketman_core import Event, Rocketman


@pytest.fixture
def app() -> Iterator[Rocketman]:
    runtime = Rocketman()
    runtime.configure(storage="memory", executor="threads", worker_count=5, latency=0.5,
                      max_retries=3, retry_backoff=0.01)
    yield runtime
    runtime.shutdown(timeout=5)


def test_100k_events_from_4_threads_reach_two_consumers_exactly_once(app: Rocketman) -> None:
    first: Counter[int] = Counter()
    second: Counter[int] = Counter()
    lock = threading.Lock()

    @app.on_event("load")
    def count_first(payload: int) -> None:
        with lock:
            first[payload] += 1

    @app.on_event("load")
    def count_second(payload: int) -> None:
        with lock:
            second[payload] += 1

    def produce(offset: int) -> None:
        for number in range(offset, offset + 25_000):
            app.emit("load", number)

    producers = [threading.Thread(target=produce, args=(n * 25_000,)) for n in range(4)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    assert app.drain(timeout=120) is True
    expected = Counter(range(100_000))
    assert first == expected
    assert second == expected
    assert app.stats() == {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 0,
                           "dropped": 0}


def test_a_failing_consumer_is_retried_alone(app: Rocketman, caplog: pytest.LogCaptureFixture) -> None:
    calls = Counter[str]()
    attempts: list[int] = []

    @app.on_event("order.paid")
    def flaky(payload: Any, event: Event) -> None:
        calls["flaky"] += 1
        attempts.append(event.attempt)
        if calls["flaky"] <= 2:
            raise ConnectionError("try again")

    @app.on_event("order.paid")
    def sibling(payload: Any) -> None:
        calls["sibling"] += 1

    with caplog.at_level(logging.DEBUG, logger="rocketman"):
        app.emit("order.paid", {"order": 1})
        assert app.drain(timeout=10)
    assert calls == {"flaky": 3, "sibling": 1}
    assert attempts == [0, 1, 2]
    # A retry is one WARNING line for people on call; its traceback is at DEBUG.
    failures = [r for r in caplog.records if "failed on order.paid" in r.getMessage()]
    warnings = [r for r in failures if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(not r.exc_info and "ConnectionError: try again" in r.getMessage() for r in warnings)
    tracebacks = [r for r in failures if r.levelno == logging.DEBUG]
    assert len(tracebacks) == 2 and all(r.exc_info and r.exc_info[0] is ConnectionError for r in tracebacks)
    assert app.dead_letters() == []


def test_a_consumer_that_always_fails_ends_in_dead_letters_and_replay_brings_it_back(
    app: Rocketman,
) -> None:
    calls = Counter[str]()
    healed = threading.Event()

    @app.on_event("invoice")
    def always(payload: Any) -> None:
        calls["always"] += 1
        if not healed.is_set():
            raise ValueError(f"cannot book {payload}")

    @app.on_event("invoice")
    def fine(payload: Any) -> None:
        calls["fine"] += 1

    app.emit("invoice", 7)
    assert app.drain(timeout=10)
    assert calls == {"always": 4, "fine": 1}  # the first call and max_retries=3 retries
    (record,) = app.dead_letters()
    assert record.consumer is not None and record.consumer.endswith("always")
    assert record.event is not None and (record.event.name, record.event.payload) == ("invoice", 7)
    assert record.attempts == 4
    assert "Traceback" in record.error and "ValueError: cannot book 7" in record.error
    assert app.stats()["dead"] == 1
    assert app.dead_letters(event="other") == []
    assert len(app.dead_letters(consumer="*always")) == 1

    healed.set()
    assert app.replay_dead_letters() == 1
    assert app.drain(timeout=10)
    assert calls == {"always": 5, "fine": 1}  # only the dead-lettered consumer runs again
    assert app.dead_letters() == []


def test_purge_dead_letters_by_filter(app: Rocketman) -> None:
    @app.on_event("*")
    def broken(payload: Any) -> None:
        raise RuntimeError("no")

    app.configure(storage="memory", max_retries=0, worker_count=2, latency=0.5)
    app.emit("a")
    app.emit("b")
    assert app.drain(timeout=10)
    assert {r.event.name for r in app.dead_letters() if r.event} == {"a", "b"}
    assert app.purge_dead_letters(event="a") == 1
    assert [r.event.name for r in app.dead_letters() if r.event] == ["b"]
    assert app.purge_dead_letters() == 1


def test_a_retry_for_a_consumer_that_is_gone_is_a_dead_letter(app: Rocketman) -> None:
    @app.on_event("gone")
    def vanishing(payload: Any) -> None:
        raise RuntimeError("first failure")

    from rocketman_memory import MemoryStorage

    storage = MemoryStorage()
    app.configure(storage=storage, worker_count=0, retry_backoff=0.01)
    (spec,) = app.consumers.all()
    storage.subscribe([spec.subscription()], "test")
    app.emit("gone")
    # Handle the event in this thread with the consumer registered ...
    (delivery,) = storage.reserve([spec.name], 1.0)
    assert _worker_of(app, storage).handle(delivery) is False  # retried: the storage took it back
    # ... then the consumer disappears before its retry comes due.
    app.consumers.clear()
    deliveries = storage.reserve([spec.name], 5.0)
    assert len(deliveries) == 1
    assert _worker_of(app, storage).handle(deliveries[0]) is False
    (record,) = app.dead_letters()
    assert f"no consumer named {spec.name}" in record.error
    assert record.consumer == spec.name
    assert storage.stats()["reserved"] == 0, "the dead letter did not replace the delivery"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"name": "x"}', "'id' is missing"),
        (b'{"id": "1", "name": 5}', "event name must be a string"),
        (b'{"id": "1", "name": "ok", "attempt": "3"}', "attempt"),
    ],
)
def test_a_malformed_message_is_dead_lettered_and_the_worker_goes_on(
    app: Rocketman, raw: bytes, reason: str
) -> None:
    handled = threading.Event()
    app.on_event("after", name="after")(lambda payload: handled.set())
    app.emit("warm.up")
    storage = app.storage
    storage.push("after", raw)  # as a foreign producer would, under the event's name
    app.emit("after")
    assert handled.wait(10)
    assert app.drain(timeout=10)
    (record,) = app.dead_letters()
    assert record.event is None and record.message == raw
    assert record.consumer == "after", "a malformed message is a dead letter of its subscription"
    assert reason in record.error


@pytest.mark.parametrize("executor", ["threads", "inline"])
def test_each_consumer_of_an_event_gets_a_payload_of_its_own(executor: str) -> None:
    """A consumer that changes its payload changes nothing another consumer sees."""
    runtime = Rocketman()
    runtime.configure(storage="memory", executor=executor, worker_count=2, latency=0.5)
    seen: list[Any] = []
    lock = threading.Lock()

    @runtime.on_event("shared", name="mutator")
    def mutator(payload: Any, event: Event) -> None:
        payload["items"].append("mutated")
        with lock:
            seen.append(("mutator", list(payload["items"]), event.payload is payload))

    @runtime.on_event("shared", name="reader")
    def reader(payload: Any, event: Event) -> None:
        with lock:
            seen.append(("reader", list(payload["items"]), event.payload is payload))

    try:
        for _ in range(20):
            runtime.emit("shared", {"items": ["original"]})
        assert runtime.drain(timeout=10)
    finally:
        runtime.shutdown(timeout=5)
    assert sorted({tuple(map(str, s)) for s in seen}) == [
        ("mutator", "['original', 'mutated']", "True"), ("reader", "['original']", "True")]


def _worker_of(app: Rocketman, storage: Any) -> Any:
    """A worker loop of ``app``'s parts on ``storage``, to handle deliveries in the test's thread."""
    from rocketman_core._backends import check_storage
    from rocketman_core._dispatch import Idle, WorkerLoop
    from rocketman_core._hooks import Hooks
    from rocketman_core._hosting import Hosting

    features = check_storage(storage)
    hosting = Hosting(storage, features, app.consumers, app.settings, threading.RLock())
    return WorkerLoop(storage, features, app.consumers, app.settings, Hooks(app.plugins), hosting, Idle())
