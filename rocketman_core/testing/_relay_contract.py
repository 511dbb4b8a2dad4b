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

A relay whose tests can stop and restart its server opts into the outage
tests by subclassing :class:`RelayRestartContract` instead, and providing
two more fixtures, ``restart_server`` and ``stop_server``::

    class TestMyRelay(RelayRestartContract):
        @pytest.fixture
        def own_server(self):                 # a server of the test's own, on a free port
            with ServerProcess("my-server", ["--port", "{port}"]) as server:
                yield server

        @pytest.fixture
        def relay(self, own_server): ...      # the relay and publish use own_server
        @pytest.fixture
        def publish(self, own_server): ...
        @pytest.fixture
        def restart_server(self, own_server):
            return own_server.restart          # also starts a stopped server
        @pytest.fixture
        def stop_server(self, own_server):
            return own_server.stop

A subclass of :class:`RelayContract` alone does not collect those tests:
nothing is skipped, they are not there.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .._contracts import Relay
from ._recording import EmitRecorder

__all__ = ["RelayContract", "RelayRestartContract"]

Publish = Callable[[str, str], None]

#: The payload key that marks the kit's subscription probes.
PROBE_KEY = "rocketman-kit-probe"

_rounds = itertools.count()


class _KitRecorder(EmitRecorder):
    """The ``emit`` the kit gives the relay: probes (payloads with :data:`PROBE_KEY`) apart.

    A relay may deliver late copies of a probe after the first one was
    seen, so probes never count as the test's messages.
    """

    def __init__(self) -> None:
        super().__init__()
        self.probes: list[tuple[str, Any]] = []

    def _record(self, name: str, payload: Any) -> None:
        if isinstance(payload, dict) and PROBE_KEY in payload:
            self.probes.append((name, payload))
        else:
            super()._record(name, payload)

    def has_probe(self, round_tag: str) -> bool:
        """Whether a probe of ``round_tag`` arrived; call it with the lock held (in wait_for)."""
        return any(str(payload[PROBE_KEY]).startswith(round_tag) for _, payload in self.probes)


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
    ) -> Iterator[_KitRecorder]:
        """What the started, subscribed relay emits; the relay is stopped afterwards."""
        recorder = _KitRecorder()
        self._start(relay, recorder)
        try:
            self._wait_subscribed(recorder, publish)
            yield recorder
        finally:
            relay.stop(timeout=self.stop_timeout)

    def _start(self, relay: Relay, recorder: _KitRecorder) -> None:
        began = time.monotonic()
        relay.start(recorder)
        took = time.monotonic() - began
        assert took < self.start_within, f"start() took {took:.2f}s: it must return promptly"

    def _wait_subscribed(self, recorder: _KitRecorder, publish: Publish,
                         timeout: float | None = None) -> None:
        # Subscribing happens in the relay's thread, after start() returned; a
        # message published before it is lost (that is how pub-sub works), so
        # publish a probe until one of this round comes through. While a
        # server comes back, publishing itself may fail: retried too.
        timeout = self.subscribe_timeout if timeout is None else timeout
        tag = f"{next(_rounds)}-"
        deadline = time.monotonic() + timeout
        sent = 0
        failure: Exception | None = None
        while time.monotonic() < deadline:
            try:
                publish(self.event_name, json.dumps({PROBE_KEY: f"{tag}{sent}"}))
            except Exception as error:  # the server is not back yet
                failure = error
            sent += 1
            if recorder.wait_for(lambda: recorder.has_probe(tag), 0.1):
                return
        last = f"; the last publish failed: {failure!r}" if failure else ""
        pytest.fail(f"the relay emitted none of the {sent} probes published as "
                    f"{self.event_name!r} within {timeout}s: it never subscribed{last}")

    def _wait_calls(self, recorder: EmitRecorder, count: int) -> list[tuple[str, Any]]:
        arrived = recorder.wait_for(lambda: len(recorder.calls) >= count, self.delivery_timeout)
        calls = recorder.calls
        assert arrived, (f"emit was called {len(calls)} times in "
                         f"{self.delivery_timeout}s, {count} messages were published")
        return calls

    def test_a_json_message_is_emitted_as_its_payload(
        self, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """Published JSON text reaches ``emit(name, payload)`` decoded, from the relay's thread."""
        publish(self.event_name, '{"a": 1}')
        assert self._wait_calls(emitted, 1) == [(self.event_name, {"a": 1})]
        assert threading.get_ident() not in emitted.threads, (
            "emit was called from the test's thread, not the relay's")

    def test_a_plain_text_message_is_emitted_as_text(
        self, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """Text that is not JSON reaches ``emit`` unchanged, as a string."""
        publish(self.event_name, "plain text")
        assert self._wait_calls(emitted, 1) == [(self.event_name, "plain text")]

    def test_text_that_is_not_strict_json_is_emitted_as_text(
        self, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """``NaN`` and ``1e400`` parse in Python, not in JSON: they stay text (the payload rule)."""
        publish(self.event_name, "NaN")
        publish(self.event_name, "1e400")
        assert self._wait_calls(emitted, 2) == [(self.event_name, "NaN"), (self.event_name, "1e400")]

    def test_messages_in_a_row_all_arrive_in_order(
        self, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """100 messages published in a row are all emitted, in the order they were published."""
        for number in range(100):
            publish(self.event_name, json.dumps({"n": number}))
        calls = self._wait_calls(emitted, 100)
        assert calls == [(self.event_name, {"n": number}) for number in range(100)]

    def _assert_stops_in_time(self, relay: Relay, threads_before_start: set[threading.Thread]) -> None:
        """``stop(stop_timeout)`` returns in time and leaves no thread that was not there before start."""
        began = time.monotonic()
        relay.stop(timeout=self.stop_timeout)
        took = time.monotonic() - began
        assert took <= self.stop_timeout + self.timing_tolerance, f"stop took {took:.2f}s"
        left = [t.name for t in set(threading.enumerate()) - threads_before_start if t.is_alive()]
        assert not left, f"threads still alive after stop(): {left}"

    def test_stop_ends_the_relay_thread_within_its_timeout(
        self, relay: Relay, emitted: _KitRecorder, threads_before_start: set[threading.Thread]
    ) -> None:
        """``stop(timeout)`` returns in time and leaves no thread of the relay alive."""
        self._assert_stops_in_time(relay, threads_before_start)

    def test_stop_is_idempotent(self, relay: Relay, emitted: _KitRecorder) -> None:
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

    def test_start_on_a_running_relay_is_an_error_and_it_goes_on(
        self, relay: Relay, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """``start`` on a running relay raises ``RuntimeError``; the running relay still relays."""
        with pytest.raises(RuntimeError):
            relay.start(_KitRecorder())
        publish(self.event_name, '{"still": "relaying"}')
        assert self._wait_calls(emitted, 1) == [(self.event_name, {"still": "relaying"})]

    def test_a_stopped_relay_starts_again(
        self, relay: Relay, emitted: _KitRecorder, publish: Publish
    ) -> None:
        """``start`` after ``stop`` reconnects and relays again, to the new ``emit`` only."""
        relay.stop(timeout=self.stop_timeout)
        again = _KitRecorder()
        self._start(relay, again)  # the emitted fixture stops it at teardown
        self._wait_subscribed(again, publish)
        publish(self.event_name, '{"again": true}')
        assert self._wait_calls(again, 1) == [(self.event_name, {"again": True})]
        assert emitted.calls == [], "the emit of the first start was called after stop()"


class RelayRestartContract(RelayContract):
    """:class:`RelayContract`, and the relay outliving its server: restarts, late starts.

    Opt-in: subclass it instead of :class:`RelayContract` when the tests can
    stop and restart the server the relay listens to. Besides ``relay`` and
    ``publish`` (which then use that server), provide:

    * ``restart_server()``: stop the server if it runs, start it again on the
      same address, and return once it accepts connections.
    * ``stop_server()``: stop the server (``restart_server()`` brings it back).

    ``publish`` must work again once ``restart_server()`` returned (a client
    that reconnects, or a connection made anew); the kit retries a publish
    that fails while the relay resubscribes.
    """

    #: How long the relay may take to subscribe again after its server came back.
    reconnect_timeout: float = 30.0
    #: How long the server stays down after the relay started, in
    #: ``test_a_relay_started_while_its_server_is_down_connects_when_it_comes_up``:
    #: the length of the outage the relay must sit through, not a synchronisation.
    outage: float = 1.0

    @pytest.fixture
    def restart_server(self) -> Callable[[], None]:
        """``restart_server()``: stop and start the relay's server: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `restart_server` fixture")

    @pytest.fixture
    def stop_server(self) -> Callable[[], None]:
        """``stop_server()``: stop the relay's server: a subclass must provide it."""
        pytest.fail(f"{type(self).__name__} must define a `stop_server` fixture")

    def test_the_relay_reconnects_after_its_server_restarts(
        self, emitted: _KitRecorder, publish: Publish, restart_server: Callable[[], None]
    ) -> None:
        """The server restarts: the relay resubscribes by itself, and messages flow again."""
        publish(self.event_name, '{"before": 1}')
        assert self._wait_calls(emitted, 1) == [(self.event_name, {"before": 1})]
        restart_server()
        self._wait_subscribed(emitted, publish, self.reconnect_timeout)
        publish(self.event_name, '{"after": 2}')
        assert self._wait_calls(emitted, 2) == [
            (self.event_name, {"before": 1}), (self.event_name, {"after": 2})]

    def test_a_relay_started_while_its_server_is_down_connects_when_it_comes_up(
        self, relay: Relay, publish: Publish, stop_server: Callable[[], None],
        restart_server: Callable[[], None],
    ) -> None:
        """``start`` with the server down returns promptly; once it is up, messages flow."""
        stop_server()
        recorder = _KitRecorder()
        self._start(relay, recorder)
        try:
            time.sleep(self.outage)  # the outage's length, during which the relay keeps trying
            restart_server()
            self._wait_subscribed(recorder, publish, self.reconnect_timeout)
            publish(self.event_name, '{"up": true}')
            assert self._wait_calls(recorder, 1) == [(self.event_name, {"up": True})]
        finally:
            relay.stop(timeout=self.stop_timeout)

    def test_stop_is_prompt_while_the_server_is_down(
        self, relay: Relay, publish: Publish, stop_server: Callable[[], None],
        threads_before_start: set[threading.Thread],
    ) -> None:
        """A relay trying to reach a server that is down stops within its timeout, leaving no thread."""
        stop_server()
        self._start(relay, _KitRecorder())
        self._assert_stops_in_time(relay, threads_before_start)
