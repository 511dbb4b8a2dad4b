"""Broadcast hooks: what a metrics or tracing plugin sees, with no change to the core."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from rocketman_core import Event, Rocketman, hookimpl


class Recorder:
    """A plugin implementing every broadcast hook, as a metrics plugin would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def _add(self, hook: str, **kwargs: Any) -> None:
        with self.lock:
            self.calls.append((hook, kwargs))

    @hookimpl
    def rocketman_event_emitted(self, event: Event) -> None:
        self._add("emitted", event=event)

    @hookimpl
    def rocketman_event_handled(self, event: Event, consumer: str, duration: float) -> None:
        self._add("handled", event=event, consumer=consumer, duration=duration)

    @hookimpl
    def rocketman_event_failed(
        self, event: Event, consumer: str, error: BaseException, will_retry: bool
    ) -> None:
        self._add("failed", event=event, consumer=consumer, error=error, will_retry=will_retry)

    @hookimpl
    def rocketman_event_dead_lettered(self, event: Event | None, consumer: str | None, reason: str) -> None:
        self._add("dead_lettered", event=event, consumer=consumer, reason=reason)

    def of(self, hook: str) -> list[dict[str, Any]]:
        with self.lock:
            return [kwargs for name, kwargs in self.calls if name == hook]


@pytest.fixture
def observed() -> Any:
    runtime = Rocketman()
    recorder = Recorder()
    runtime.register_plugin(recorder, name="recorder")
    runtime.configure(worker_count=2, latency=0.5, max_retries=1, retry_backoff=0.01)
    yield runtime, recorder
    runtime.shutdown(timeout=5)


def test_emitted_and_handled_with_duration(observed: Any) -> None:
    runtime, recorder = observed

    @runtime.on_event("ok")
    def fine(payload: Any) -> None:
        pass

    event_id = runtime.emit("ok", {"n": 1})
    assert runtime.drain(timeout=10)
    (emitted,) = recorder.of("emitted")
    assert (emitted["event"].id, emitted["event"].name, emitted["event"].payload) == (event_id, "ok", {"n": 1})
    (handled,) = recorder.of("handled")
    assert handled["event"].id == event_id
    assert handled["consumer"].endswith("fine")
    assert handled["duration"] >= 0


def test_failed_says_whether_it_will_retry_then_dead_lettered(observed: Any) -> None:
    runtime, recorder = observed

    @runtime.on_event("bad")
    def broken(payload: Any) -> None:
        raise ValueError("nope")

    runtime.emit("bad")
    assert runtime.drain(timeout=10)
    failed = recorder.of("failed")
    assert [f["will_retry"] for f in failed] == [True, False]  # max_retries=1
    assert all(isinstance(f["error"], ValueError) for f in failed)
    (dead,) = recorder.of("dead_lettered")
    assert dead["consumer"].endswith("broken") and dead["event"].name == "bad"
    assert "nope" in dead["reason"]


def test_a_malformed_message_is_reported_dead_lettered_without_an_event(observed: Any) -> None:
    runtime, recorder = observed
    runtime.on_event("warm.up", name="warm")(lambda payload: None)
    runtime.emit("warm.up")
    runtime.storage.push("warm.up", b"garbage")
    assert runtime.drain(timeout=10)
    (dead,) = recorder.of("dead_lettered")
    assert dead["event"] is None and dead["consumer"] == "warm"
    assert "malformed" in dead["reason"]


def test_a_hook_that_raises_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    class Faulty:
        @hookimpl
        def rocketman_event_emitted(self, event: Event) -> None:
            raise RuntimeError("metrics backend down")

    runtime = Rocketman()
    runtime.register_plugin(Faulty(), name="faulty")
    runtime.configure(executor="inline")
    seen: list[Any] = []
    runtime.on_event("x")(seen.append)
    with caplog.at_level(logging.ERROR, logger="rocketman"):
        runtime.emit("x", 1)
    assert seen == [1]
    assert any("rocketman_event_emitted" in r.getMessage() for r in caplog.records)


def test_without_implementations_the_hooks_are_not_called() -> None:
    runtime = Rocketman()
    runtime.configure(executor="inline")
    runtime.emit("x")
    hooks = runtime._hooks
    assert not (hooks.emitted or hooks.handled or hooks.failed or hooks.dead_lettered)


class _Named:
    """A plugin whose emitted hook records its name in a shared list, and may raise."""

    def __init__(self, name: str, seen: list[str], fails: bool = False) -> None:
        self.name, self.seen, self.fails = name, seen, fails

    @hookimpl
    def rocketman_event_emitted(self, event: Event) -> None:
        self.seen.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} is broken")


class _First(_Named):
    @hookimpl(tryfirst=True)
    def rocketman_event_emitted(self, event: Event) -> None:
        super().rocketman_event_emitted(event)


def test_each_implementation_runs_in_pluggys_order_and_one_that_raises_does_not_silence_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Last registered first, tryfirst before all; a raising observer is logged, the next still runs."""
    seen: list[str] = []
    runtime = Rocketman()
    runtime.register_plugin(_Named("a", seen), name="a")
    runtime.register_plugin(_Named("b", seen, fails=True), name="b")
    runtime.register_plugin(_First("first", seen), name="first")
    runtime.register_plugin(_Named("c", seen), name="c")
    runtime.configure(executor="inline")
    with caplog.at_level(logging.ERROR, logger="rocketman"):
        runtime.emit("x")
    assert seen == ["first", "c", "b", "a"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == "the rocketman_event_emitted hook of the plugin b raised; ignored"


def test_a_wrapper_implementation_is_called_through_pluggy() -> None:
    """A hook with a wrapper keeps pluggy's semantics: the wrapper sees the call around the others."""
    seen: list[str] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def rocketman_event_emitted(self, event: Event) -> Any:
            seen.append("before")
            result = yield
            seen.append("after")
            return result

    runtime = Rocketman()
    runtime.register_plugin(_Named("plain", seen), name="plain")
    runtime.register_plugin(Wrapper(), name="wrapper")
    runtime.configure(executor="inline")
    runtime.emit("x")
    assert seen == ["before", "plain", "after"]
