"""Lost or stuck work (hardening): whatever a consumer raises, whatever a payload holds, nothing loops or dies."""

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
    runtime.configure(storage="memory", worker_count=1, latency=0.2, max_retries=2, retry_backoff=0.01)
    yield runtime
    runtime.shutdown(timeout=5)


def test_a_consumer_raising_system_exit_fails_alone_and_the_worker_goes_on(app: Rocketman) -> None:
    """sys.exit() in a consumer is its failure: retried, then fine; the one worker keeps working."""
    calls: Counter[str] = Counter()

    @app.on_event("job", name="exits")
    def exits(payload: Any, event: Event) -> None:
        calls["exits"] += 1
        if event.attempt == 0:
            raise SystemExit(3)

    @app.on_event("job", name="sibling")
    def sibling(payload: Any) -> None:
        calls["sibling"] += 1

    app.emit("job")
    assert app.drain(timeout=10), "the event stayed reserved: the worker died"
    app.emit("job")
    assert app.drain(timeout=10), "worker_count=1 and nothing more is handled"
    assert calls == {"exits": 4, "sibling": 2}  # each event: one failure, one success


def test_a_consumer_raising_system_exit_every_time_is_dead_lettered(app: Rocketman) -> None:
    app.on_event("job", name="always.exits")(lambda payload: (_ for _ in ()).throw(SystemExit(1)))
    app.emit("job")
    assert app.drain(timeout=10)
    (letter,) = app.dead_letters()
    assert letter.consumer == "always.exits" and "SystemExit" in letter.error


def test_a_worker_thread_that_dies_anyway_is_started_again_with_a_log_line(
    app: Rocketman, caplog: pytest.LogCaptureFixture,
) -> None:
    """KeyboardInterrupt on a worker thread still means stop for it: the executor restarts it."""
    seen: list[int] = []

    @app.on_event("job", name="interrupted")
    def interrupted(payload: int) -> None:
        seen.append(payload)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with caplog.at_level(logging.ERROR, logger="rocketman"):
        app.emit("job", 1)
        app.emit("job", 2)
        assert app.drain(timeout=10), "a dead worker left its batch reserved"
    assert sorted(seen) == [1, 1, 2], "the interrupted event was not given back, or lost"
    restarts = [r for r in caplog.records if "starting it again" in r.getMessage()]
    assert len(restarts) == 1, [r.getMessage() for r in caplog.records]


def test_an_inline_consumers_keyboard_interrupt_reaches_the_caller() -> None:
    runtime = Rocketman()
    runtime.configure(executor="inline")

    @runtime.on_event("job")
    def interrupted(payload: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runtime.emit("job")


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_payload_with_a_json_constant_json_does_not_have_is_a_malformed_dead_letter(
    app: Rocketman, number: bytes,
) -> None:
    """Decode refuses what emit refuses: NaN and Infinity are not JSON."""
    ran = threading.Event()
    app.on_event("measured", name="measured")(lambda payload: ran.set())
    app.emit("warm.up")
    assert app.storage is not None
    app.storage.push("measured", b'{"id":"x1","name":"measured","payload":{"value":' + number + b"}}")
    assert app.drain(timeout=10), "the message loops"
    (letter,) = app.dead_letters()
    assert letter.event is None and "malformed" in letter.error and "NaN" in letter.error
    assert not ran.is_set()


def test_a_payload_overflowing_to_infinity_whose_consumer_fails_does_not_loop(app: Rocketman) -> None:
    """1e400 decodes to inf; the retry cannot be written back: a dead letter of the original, once."""
    calls: list[Any] = []

    @app.on_event("measured", name="fails")
    def fails(payload: Any) -> None:
        calls.append(payload)
        raise ValueError("cannot handle it")

    app.emit("warm.up")
    assert app.storage is not None
    original = b'{"id":"x2","name":"measured","payload":{"value":1e400}}'
    app.storage.push("measured", original)
    assert app.drain(timeout=10), "the message stays reserved, or loops"
    assert len(calls) == 1, f"the consumer ran {len(calls)} times"
    (letter,) = app.dead_letters()
    assert letter.message == original, "the dead letter must keep the bytes as they came"
    assert "cannot be written back" in letter.error and "cannot handle it" in letter.error


def test_a_dead_letter_has_a_one_line_reason_beside_its_traceback(app: Rocketman) -> None:
    @app.on_event("invoice.paid", name="book")
    def book(payload: Any) -> None:
        raise ValueError("no ledger for invoice 7")

    app.emit("invoice.paid", {"invoice": 7})
    assert app.drain(timeout=10)
    (letter,) = app.dead_letters()
    assert letter.reason == "ValueError: no ledger for invoice 7"
    assert "Traceback (most recent call last)" in letter.error and letter.error.startswith(letter.reason)


def test_every_event_emitted_while_shutdown_runs_is_handled_or_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """8 threads emit through a shutdown: each accepted emit is handled, or counted in its WARNING."""
    import re

    runtime = Rocketman()
    runtime.configure(storage="memory", worker_count=2, latency=0.2, shutdown_timeout=0.2)
    handled: list[int] = []
    lock = threading.Lock()

    @runtime.on_event("load", name="slow")
    def slow(payload: int) -> None:
        with lock:
            handled.append(payload)
        threading.Event().wait(0.0005)  # slower than 8 producers: a backlog builds

    runtime.emit("load", -1)
    accepted: list[int] = []
    refused: list[BaseException] = []
    stop = threading.Event()

    def produce(offset: int) -> None:
        number = offset
        while not stop.is_set():
            try:
                runtime.emit("load", number)
            except Exception as error:
                refused.append(error)
                return
            with lock:
                accepted.append(number)
            number += 8

    producers = [threading.Thread(target=produce, args=(n,), daemon=True) for n in range(8)]
    for thread in producers:
        thread.start()
    wait = threading.Event()
    wait.wait(0.2)  # let a backlog build while they emit
    with caplog.at_level(logging.WARNING, logger="rocketman"):
        runtime.shutdown()
        stop.set()
        for thread in producers:
            thread.join(5)
        runtime.shutdown()  # an emit after shutdown starts a fresh runtime: count what it left too
    lost = 0
    for record in caplog.records:
        found = re.search(r"stopped with (\d+) events not handled", record.getMessage())
        if found:
            lost += int(found.group(1))
    with lock:
        unhandled = len(set(accepted) - set(handled))
    assert unhandled == lost, (
        f"{unhandled} accepted events were not handled, and the WARNING counts {lost}: "
        f"{unhandled - lost} vanished")
    assert all("closed" in str(error) for error in refused), refused[:1]


def test_inline_emit_many_runs_no_consumer_when_a_later_payload_is_bad() -> None:
    """emit_many promises none is emitted when one payload is bad: inline too."""
    runtime = Rocketman()
    runtime.configure(executor="inline")
    ran: list[Any] = []
    runtime.on_event("job")(ran.append)
    with pytest.raises(TypeError, match="cannot be carried as JSON"):
        runtime.emit_many([("job", 1), ("job", 2), ("job", {1, 2})])
    assert ran == [], "consumers ran for events emit_many then refused"
    runtime.emit_many([("job", 3), ("job", 4)])
    assert ran == [3, 4]
