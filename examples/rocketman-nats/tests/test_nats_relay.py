"""The NATS relay against a real NATS server: what it emits, what it drops, how it lives."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from rocketman_nats import NatsRelay

from rocketman_core.testing import wait_until

RelayFactory = Callable[..., NatsRelay]
# The helpers' classes live in conftest.py, which test modules cannot import
# (--import-mode=importlib); they arrive as fixtures.
EmittedEvents = Any
NatsTestPublisher = Any
NatsServerProcess = Any


def started(relay: NatsRelay, emit: EmittedEvents) -> NatsRelay:
    """Start ``relay`` and wait until the server has its subscriptions."""
    relay.start(emit)
    assert relay.wait_subscribed(10), "the relay did not subscribe within 10s"
    return relay


def test_bodies_become_json_payloads_or_text(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents,
    nats_publisher: NatsTestPublisher, nats_url: str, nats_subject_root: str,
) -> None:
    """A JSON body is decoded; anything else that is UTF-8 arrives as text, in order."""
    started(nats_relays(url=nats_url, subjects=f"{nats_subject_root}.>"), nats_emitted)
    subject = f"{nats_subject_root}.order"
    bodies: list[tuple[str, Any]] = [
        ('{"id": 42, "items": [1, 2]}', {"id": 42, "items": [1, 2]}),
        ("[1, 2]", [1, 2]),
        ('"quoted"', "quoted"),
        ("3.5", 3.5),
        ("null", None),
        ("plain text, not JSON", "plain text, not JSON"),
        ("", ""),
        ("NaN", "NaN"),  # not JSON for rocketman, whose envelope refuses NaN
        ("héllo ✓", "héllo ✓"),
    ]
    for body, _ in bodies:
        nats_publisher.publish(subject, body)
    calls = nats_emitted.wait_for_count(len(bodies))
    assert calls == [(subject, payload) for _, payload in bodies]


def test_the_prefix_is_stripped_from_event_names(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents,
    nats_publisher: NatsTestPublisher, nats_url: str, nats_subject_root: str,
) -> None:
    """``prefix`` comes off the subjects that start with it; other subjects keep their name."""
    root = nats_subject_root
    relay = nats_relays(url=nats_url, subjects=f"{root}.orders.>,{root}.billing.*",
                        prefix=f"{root}.orders.")
    started(relay, nats_emitted)
    nats_publisher.publish(f"{root}.orders.created", "1")
    nats_publisher.publish(f"{root}.billing.paid", "2")
    nats_publisher.publish(f"{root}.billing.paid.late", "3")  # '*' is one token: not heard
    nats_publisher.publish(f"{root}.orders.shipped", "4")
    calls = nats_emitted.wait_for_count(3)
    assert calls == [("created", 1), (f"{root}.billing.paid", 2), ("shipped", 4)]


def test_subjects_separated_by_spaces_as_in_an_environment_variable(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents,
    nats_publisher: NatsTestPublisher, nats_url: str, nats_subject_root: str,
) -> None:
    """``subjects="a.> b.>"`` (``+`` in a URL) subscribes to both: commas separate relays there."""
    root = nats_subject_root
    relay = nats_relays(url=nats_url, subjects=f"{root}.a.> {root}.b.>")
    assert relay.subjects == (f"{root}.a.>", f"{root}.b.>")
    started(relay, nats_emitted)
    nats_publisher.publish(f"{root}.a.x", "1")
    nats_publisher.publish(f"{root}.b.y", "2")
    assert nats_emitted.wait_for_count(2) == [(f"{root}.a.x", 1), (f"{root}.b.y", 2)]


def test_bad_messages_are_dropped_counted_and_logged_and_the_relay_goes_on(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents, nats_publisher: NatsTestPublisher,
    nats_url: str, nats_subject_root: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Invalid UTF-8, a subject that names no event, and an oversize body are not emitted."""
    root = nats_subject_root
    relay = nats_relays(url=nats_url, subjects=f"{root}.>", prefix=f"{root}.", max_bytes="64")
    started(relay, nats_emitted)
    with caplog.at_level(logging.WARNING, logger="rocketman.relay.nats"):
        nats_publisher.publish(f"{root}.binary", b"\xff\xfe not utf-8")
        nats_publisher.publish(f"{root}.big", "x" * 65)
        nats_publisher.publish(f"{root}.{'n' * 256}", "1")  # over 255 characters
        nats_publisher.publish(f"{root}.big", "x" * 64)  # exactly max_bytes: relayed
        nats_publisher.publish(f"{root}.after", '{"still": "relaying"}')
        calls = nats_emitted.wait_for_count(2)
    assert calls == [("big", "x" * 64), ("after", {"still": "relaying"})]
    stats = relay.stats()
    assert (stats["received"], stats["emitted"]) == (5, 2)
    assert (stats["invalid_utf8"], stats["oversize"], stats["invalid_name"]) == (1, 1, 1)
    logged = caplog.text
    assert "not UTF-8" in logged and "max_bytes=64" in logged and "not a valid" in logged


def test_a_failing_emit_is_logged_counted_and_does_not_stop_the_relay(
    nats_relays: RelayFactory, nats_recorders: Callable[[], EmittedEvents], nats_publisher: NatsTestPublisher, nats_url: str,
    nats_subject_root: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """When the storage refuses an event, that message is lost, the next ones are not."""
    received = nats_recorders()

    def emit(name: str, payload: Any) -> None:
        if payload == "refused":
            raise ConnectionError("the storage at redis://user:s3cret@db:6379 is down")
        received(name, payload)

    relay = nats_relays(url=nats_url, subjects=f"{nats_subject_root}.>")
    relay.start(emit)
    assert relay.wait_subscribed(10)
    with caplog.at_level(logging.WARNING, logger="rocketman.relay.nats"):
        nats_publisher.publish(f"{nats_subject_root}.e", "refused")
        nats_publisher.publish(f"{nats_subject_root}.e", "accepted")
        assert received.wait_for_count(1) == [(f"{nats_subject_root}.e", "accepted")]
    assert relay.stats()["emit_failed"] == 1
    assert "the storage at redis://user:***@db:6379 is down" in caplog.text
    assert "s3cret" not in caplog.text


def test_relays_in_one_queue_group_share_the_messages(
    nats_relays: RelayFactory, nats_recorders: Callable[[], EmittedEvents], nats_publisher: NatsTestPublisher,
    nats_url: str, nats_subject_root: str,
) -> None:
    """With ``queue``, each message is emitted by one relay of the group, not by each."""
    first, second = nats_recorders(), nats_recorders()
    options = {"url": nats_url, "subjects": f"{nats_subject_root}.>", "queue": "workers"}
    started(nats_relays(**options), first)
    started(nats_relays(**options), second)
    for number in range(40):
        nats_publisher.publish(f"{nats_subject_root}.job", str(number))
    wait_until(lambda: len(first.calls) + len(second.calls) >= 40, 10, "40 jobs emitted")
    numbers = sorted(payload for _, payload in first.calls + second.calls)
    assert numbers == list(range(40))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"subjects": "orders..created"}, "subjects"),
        ({"subjects": "orders.>.late"}, "subjects"),
        ({"subjects": "ord*rs"}, "subjects"),
        ({"subjects": " , "}, "subjects"),
        ({"max_bytes": "a lot"}, "max_bytes"),
        ({"reconnect_wait": "0"}, "reconnect_wait"),
        ({"url": "http://127.0.0.1:4222"}, "url"),
    ],
)
def test_bad_options_are_refused_when_the_relay_is_built(
    options: dict[str, str], named: str
) -> None:
    """A malformed option is a ``ValueError`` naming it, before anything connects."""
    with pytest.raises(ValueError, match=f"'{named}'"):
        NatsRelay(**options)


def test_an_unreachable_server_does_not_block_start_or_stop(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents,
    nats_server_process: NatsServerProcess, caplog: pytest.LogCaptureFixture,
) -> None:
    """start() returns at once, the relay logs (no password) and retries, stop() ends it."""
    url = nats_server_process.url.replace("nats://", "nats://relay:s3cret@")
    relay = nats_relays(url=url, reconnect_wait="0.2", connect_timeout="0.5")
    with caplog.at_level(logging.WARNING, logger="rocketman.relay.nats"):
        began = time.monotonic()
        relay.start(nats_emitted)
        assert time.monotonic() - began < 0.5
        wait_until(lambda: "cannot reach" in caplog.text, 5, "the relay logged the outage")
    assert not relay.subscribed
    began = time.monotonic()
    relay.stop(timeout=2)
    assert time.monotonic() - began < 2.5
    assert not relay.running
    assert "s3cret" not in caplog.text and "relay:***@" in caplog.text


def test_the_relay_connects_when_the_server_comes_up_later(
    nats_relays: RelayFactory, nats_publishers: Callable[[str], NatsTestPublisher], nats_emitted: EmittedEvents, nats_server_process: NatsServerProcess,
) -> None:
    """A relay started before its server keeps trying, then subscribes and relays."""
    relay = nats_relays(url=nats_server_process.url, subjects="late.>",
                        reconnect_wait="0.2", connect_timeout="0.5")
    relay.start(nats_emitted)
    assert not relay.wait_subscribed(0.3)
    nats_server_process.start()
    assert relay.wait_subscribed(10), "the relay did not connect once the server was up"
    publisher = nats_publishers(nats_server_process.url)
    publisher.publish("late.hello", '{"ok": true}')
    assert nats_emitted.wait_for_count(1) == [("late.hello", {"ok": True})]


def test_the_relay_reconnects_after_its_server_is_killed(
    nats_relays: RelayFactory, nats_publishers: Callable[[str], NatsTestPublisher], nats_emitted: EmittedEvents,
    nats_server_process: NatsServerProcess, caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL the server, restart it: the relay logs both, resubscribes, relays again."""
    nats_server_process.start()
    relay = nats_relays(url=nats_server_process.url, subjects="crash.>",
                        reconnect_wait="0.2", connect_timeout="0.5")
    started(relay, nats_emitted)
    publisher = nats_publishers(nats_server_process.url)
    publisher.publish("crash.before", "1")
    nats_emitted.wait_for_count(1)
    publisher.close()

    with caplog.at_level(logging.WARNING, logger="rocketman.relay.nats"):
        nats_server_process.kill()
        wait_until(lambda: not relay.subscribed, 10, "the relay noticed the server died")
        nats_server_process.start()
        assert relay.wait_subscribed(15), "the relay did not resubscribe after the restart"
    assert "lost its connection" in caplog.text and "reconnected" in caplog.text

    publisher = nats_publishers(nats_server_process.url)
    publisher.publish("crash.after", "2")
    assert nats_emitted.wait_for_count(2) == [("crash.before", 1), ("crash.after", 2)]
    stats = relay.stats()
    assert (stats["disconnects"], stats["reconnects"]) == (1, 1)


def test_stop_while_the_server_is_down_returns_in_time(
    nats_relays: RelayFactory, nats_emitted: EmittedEvents, nats_server_process: NatsServerProcess,
) -> None:
    """A relay busy reconnecting still stops within its timeout, leaving no thread."""
    nats_server_process.start()
    relay = nats_relays(url=nats_server_process.url, reconnect_wait="0.2", connect_timeout="0.5")
    started(relay, nats_emitted)
    nats_server_process.kill()
    wait_until(lambda: not relay.subscribed, 10, "the relay noticed the server died")
    began = time.monotonic()
    relay.stop(timeout=1)
    assert time.monotonic() - began < 1.5
    assert not relay.running


def test_stop_is_prompt_while_a_server_accepts_and_hangs_up_at_once() -> None:
    """nats-py swallowed a cancellation in its connect loop: the relay's thread never ended.

    A port that accepts and closes each connection (a server going down, a
    proxy without its backend) makes every connect attempt fail in nats-py's
    clean-up; stop() then hung for ever about once in ten tries. Twenty tries,
    each stopped at a different moment of the attempts.
    """
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed at the end of the test
            connection.close()

    threading.Thread(target=hang_up, daemon=True, name="nats-test-hang-up").start()
    try:
        for attempt in range(20):
            relay = NatsRelay(f"nats://127.0.0.1:{port}", subjects="kit.>", reconnect_wait=0.05,
                              connect_timeout=0.5)
            relay.start(lambda name, payload: None)
            time.sleep(0.02 * (attempt % 5))  # a moment to stop at, not a synchronisation
            began = time.monotonic()
            relay.stop(timeout=1)
            assert not relay.running, f"attempt {attempt}: the relay's thread outlived stop()"
            assert time.monotonic() - began < 1.5, f"attempt {attempt}: stop took too long"
    finally:
        listener.close()


def test_starting_a_running_relay_is_an_error_and_a_stopped_one_starts_again(
    nats_relays: RelayFactory, nats_recorders: Callable[[], EmittedEvents],
    nats_publisher: NatsTestPublisher, nats_url: str, nats_subject_root: str,
) -> None:
    """start() on a running relay raises, naming the fix; after stop() it subscribes anew."""
    first, second = nats_recorders(), nats_recorders()
    relay = nats_relays(url=nats_url, subjects=f"{nats_subject_root}.>")
    started(relay, first)
    with pytest.raises(RuntimeError, match="already running; stop it first"):
        relay.start(first)
    relay.stop(timeout=5)
    assert not relay.running and not relay.subscribed
    started(relay, second)
    nats_publisher.publish(f"{nats_subject_root}.again", "1")
    assert second.wait_for_count(1) == [(f"{nats_subject_root}.again", 1)]
    assert first.calls == []


def test_messages_already_received_are_emitted_when_the_relay_stops(
    nats_relays: RelayFactory, nats_recorders: Callable[[], EmittedEvents], nats_publisher: NatsTestPublisher,
    nats_url: str, nats_subject_root: str,
) -> None:
    """stop() drains the subscription: what reached the relay is emitted, not dropped."""
    gate = threading.Event()
    received = nats_recorders()

    def slow_emit(name: str, payload: Any) -> None:
        gate.wait(5)  # holds the relay while the rest of the messages arrive
        received(name, payload)

    relay = nats_relays(url=nats_url, subjects=f"{nats_subject_root}.>")
    relay.start(slow_emit)
    assert relay.wait_subscribed(10)
    for number in range(20):
        nats_publisher.publish(f"{nats_subject_root}.n", json.dumps(number))
    stopper = threading.Thread(target=relay.stop, kwargs={"timeout": 5})
    stopper.start()
    gate.set()
    stopper.join(10)
    assert [payload for _, payload in received.calls] == list(range(20))
