"""The relay conformance kit: the promises of :class:`rocketman_core.Relay`, as tests.

A relay runs it by subclassing :class:`RelayContract` in one of its test
modules and providing two fixtures::

    class TestMyRelay(RelayContract):
        @pytest.fixture
        def relay(self) -> Relay:
            return MyRelay(...)          # unstarted; relays the event `event_name`

        @pytest.fixture
        def publish(self) -> Callable[[str, str], None]:
            ...  # publish(name, text): send text where the relay hears event `name`

The ``publish`` fixture must start any thread it needs when it is built, not
on its first call: the kit compares the threads alive before ``start`` and
after ``stop`` to find threads the relay left behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .._contracts import Relay

__all__ = ["RelayContract"]

Publish = Callable[[str, str], None]

#: The payload key that marks the kit's subscription probes.
PROBE_KEY = "rocketman-kit-probe"


class EmitRecorder:
    """The ``emit`` given to the relay: records its calls, thread-safely.

    Probes (payloads carrying :data:`PROBE_KEY`) are kept apart, since a
    relay may deliver late copies of them after the first one was seen.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.probes: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        self._changed = threading.Condition()

    def __call__(self, name: str, payload: Any) -> None:
        with self._changed:
            self.threads.add(threading.get_ident())
            is_probe = isinstance(payload, dict) and PROBE_KEY in payload
            (self.probes if is_probe else self.calls).append((name, payload))
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``condition()`` holds; return whether it did."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)


class RelayContract:
    """Tests of the :class:`rocketman_core.Relay` promises; subclass it, provide the fixtures.

    ``relay`` returns an unstarted relay that relays the event
    :attr:`event_name`; ``publish(name, text)`` sends ``text`` into the outside
    system where the relay maps it to the event ``name``.
    """

    #: The event the relay under test must relay.
    event_name: str = "rocketman.contract"
    #: How long the relay may take to subscribe (the probe is re-published until then).
    subscribe_timeout: float = 10.0
    #: How long a published message may take to reach ``emit``.
    delivery_timeout: float = 10.0
    #: How long ``start`` may take to return.
    start_within: float = 2.0
    #: The ``timeout`` the kit gives ``stop``, and how much later it may return.
    stop_timeout: float = 5.0
    timing_tolerance: float = 0.5

    @pytest.fixture
    def relay(self) -> Relay:
        """An unstarted relay of :attr:`event_name`: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `relay` fixture")

    @pytest.fixture
    def publish(self) -> Publish:
        """``publish(name, text)`` into the outside system: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `publish` fixture")

    @pytest.fixture
    def threads_before_start(self, relay: Relay, publish: Publish) -> set[threading.Thread]:
        """The threads alive before the relay starts (after the fixtures were built)."""
        return set(threading.enumerate())

    @pytest.fixture
    def emitted(
        self, relay: Relay, publish: Publish, threads_before_start: set[threading.Thread]
    ) -> Iterator[EmitRecorder]:
        """What the started, subscribed relay emits; the relay is stopped afterwards."""
        recorder = EmitRecorder()
        began = time.monotonic()
        relay.start(recorder)
        took = time.monotonic() - began
        try:
            assert took < self.start_within, f"start() took {took:.2f}s: it must return promptly"
            self._wait_subscribed(recorder, publish)
            yield recorder
        finally:
            relay.stop(timeout=self.stop_timeout)

    def _wait_subscribed(self, recorder: EmitRecorder, publish: Publish) -> None:
        # Subscribing happens in the relay's thread, after start() returned; a
        # message published before it is lost (that is how pub-sub works), so
        # publish a probe until one comes through.
        deadline = time.monotonic() + self.subscribe_timeout
        sent = 0
        while time.monotonic() < deadline:
            publish(self.event_name, json.dumps({PROBE_KEY: sent}))
            sent += 1
            if recorder.wait_for(lambda: bool(recorder.probes), 0.1):
                return
        pytest.fail(f"the relay emitted none of the {sent} probes published as "
                    f"{self.event_name!r} within {self.subscribe_timeout}s: it never subscribed")

    def _wait_calls(self, recorder: EmitRecorder, count: int) -> list[tuple[str, Any]]:
        arrived = recorder.wait_for(lambda: len(recorder.calls) >= count, self.delivery_timeout)
        assert arrived, (f"emit was called {len(recorder.calls)} times in "
                         f"{self.delivery_timeout}s, {count} messages were published")
        return list(recorder.calls)

    def test_a_json_message_is_emitted_as_its_payload(
        self, emitted: EmitRecorder, publish: Publish
    ) -> None:
        """Published JSON text reaches ``emit(name, payload)`` decoded, from the relay's thread."""
        publish(self.event_name, '{"a": 1}')
        assert self._wait_calls(emitted, 1) == [(self.event_name, {"a": 1})]
        assert threading.get_ident() not in emitted.threads, (
            "emit was called from the test's thread, not the relay's")

    def test_a_plain_text_message_is_emitted_as_text(
        self, emitted: EmitRecorder, publish: Publish
    ) -> None:
        """Text that is not JSON reaches ``emit`` unchanged, as a string."""
        publish(self.event_name, "plain text")
        assert self._wait_calls(emitted, 1) == [(self.event_name, "plain text")]

    def test_messages_in_a_row_all_arrive_in_order(
        self, emitted: EmitRecorder, publish: Publish
    ) -> None:
        """100 messages published in a row are all emitted, in the order they were published."""
        for number in range(100):
            publish(self.event_name, json.dumps({"n": number}))
        calls = self._wait_calls(emitted, 100)
        assert calls == [(self.event_name, {"n": number}) for number in range(100)]

    def test_stop_ends_the_relay_thread_within_its_timeout(
        self, relay: Relay, emitted: EmitRecorder, threads_before_start: set[threading.Thread]
    ) -> None:
        """``stop(timeout)`` returns in time and leaves no thread of the relay alive."""
        began = time.monotonic()
        relay.stop(timeout=self.stop_timeout)
        took = time.monotonic() - began
        assert took <= self.stop_timeout + self.timing_tolerance, f"stop took {took:.2f}s"
        left = [t.name for t in set(threading.enumerate()) - threads_before_start if t.is_alive()]
        assert not left, f"threads still alive after stop(): {left}"

    def test_stop_is_idempotent(self, relay: Relay, emitted: EmitRecorder) -> None:
        """A second and third ``stop`` are harmless and prompt."""
        relay.stop(timeout=self.stop_timeout)
        began = time.monotonic()
        relay.stop(timeout=self.stop_timeout)
        relay.stop()
        took = time.monotonic() - began
        assert took <= self.timing_tolerance, f"stopping a stopped relay took {took:.2f}s"

    def test_stop_before_start_is_harmless(self, relay: Relay) -> None:
        """Stopping a relay that was never started does nothing, promptly."""
        began = time.monotonic()
        relay.stop(timeout=self.stop_timeout)
        took = time.monotonic() - began
        assert took <= self.timing_tolerance, f"stopping an unstarted relay took {took:.2f}s"
