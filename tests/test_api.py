"""The public API as a user writes it: emit, consumers, patterns, configuration."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import rocketman_core as rocketman
from rocketman_core import ConfigurationError, Event, Rocketman, UnknownBackendError, hookimpl


@pytest.fixture
def app() -> Iterator[Rocketman]:
    runtime = Rocketman()
    runtime.configure(storage="memory", executor="threads", worker_count=3, latency=0.5,
                      retry_backoff=0.01)
    with rocketman.using(runtime):
        yield runtime
    runtime.shutdown(timeout=5)


class Seen:
    """Calls recorded from worker threads, waited for with a deadline."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self.changed:
            self.items.append(item)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def test_module_level_emit_reaches_a_decorated_function(app: Rocketman) -> None:
    seen = Seen()

    @rocketman.on_event("hello")
    def greet(payload: Any) -> None:
        seen.add(payload)

    event_id = rocketman.emit("hello", payload={"one": 1, "two": 2})
    assert seen.wait_for(1) == [{"one": 1, "two": 2}]
    assert isinstance(event_id, str) and event_id


def test_producer_mixin_and_consumer_class(app: Rocketman) -> None:
    seen = Seen()

    class Greeter(rocketman.Consumer):
        def __init__(self) -> None:
            self.greeted = 0

        @rocketman.on_event("hello")
        def greet(self, payload: Any) -> None:
            self.greeted += 1
            seen.add(("greet", payload, self.greeted))

        @rocketman.on_event("bye")
        def bye(self, payload: Any) -> None:
            seen.add(("bye", payload, self.greeted))

    class Shop(rocketman.Producer):
        def checkout(self) -> str:
            return self.emit("hello", payload="world")

    Shop().checkout()
    seen.wait_for(1)
    rocketman.emit("bye")
    # One instance per class receives every event: the state is shared.
    assert seen.wait_for(2) == [("greet", "world", 1), ("bye", None, 1)]


def test_patterns_match_many_names(app: Rocketman) -> None:
    seen = Seen()
    app.on_event("user.*")(lambda payload: seen.add(("user.*", payload)))
    app.on_event("*")(lambda payload: seen.add(("*", payload)))
    app.emit("user.signed_up", 1)
    app.emit("order.paid", 2)
    assert app.drain(timeout=10)
    assert sorted(seen.items) == [("*", 1), ("*", 2), ("user.*", 1)]


def test_a_consumer_may_ask_for_the_event(app: Rocketman) -> None:
    seen = Seen()

    @app.on_event("signup")
    def with_event(payload: Any, event: Event) -> None:
        seen.add(event)

    before = time.time()
    event_id = app.emit("signup", {"id": 7})
    (event,) = seen.wait_for(1)
    assert (event.id, event.name, event.payload, event.attempt) == (event_id, "signup", {"id": 7}, 0)
    assert before - 0.001 <= event.emitted_at <= time.time()


def test_emitted_at_is_the_emit_time_to_the_millisecond_for_every_event(app: Rocketman) -> None:
    # The clock's text is cached per millisecond: each event still gets its own.
    seen = Seen()
    app.on_event("tick")(lambda payload, event: seen.add((payload, event.emitted_at)))
    sent = {}
    for number in range(200):
        before = time.time()
        if number % 2:
            app.emit("tick", number)
        else:
            app.emit_many([("tick", number)])
        sent[number] = (before, time.time())
        while time.time() - before < 0.0003:  # spread the events over many milliseconds
            pass
    for number, emitted_at in seen.wait_for(200):
        before, after = sent[number]
        assert before - 0.001 <= emitted_at <= after, (number, before, emitted_at, after)


@pytest.mark.parametrize("milliseconds", [0, 5, 50, 999, 1000, 1005, 1_796_291_831_007])
def test_the_envelope_writes_its_time_as_seconds_with_three_decimals(milliseconds: int) -> None:
    from rocketman_core._envelope import seconds_text

    assert seconds_text(milliseconds) == f"{milliseconds / 1000:.3f}"


def test_payload_reaches_consumers_as_json_gives_it_back(app: Rocketman) -> None:
    seen = Seen()
    app.on_event("shape")(seen.add)
    app.emit("shape", {"tuple": (1, 2), 3: "int key"})
    assert seen.wait_for(1) == [{"tuple": [1, 2], "3": "int key"}]


@pytest.mark.parametrize("executor", ["threads", "inline"])
@pytest.mark.parametrize(
    ("payload", "offender"),
    [({"when": {1, 2}}, "set"), ([object()], "object"), ({"nan": float("nan")}, "nan"), (b"raw", "bytes")],
)
def test_a_payload_json_cannot_carry_is_a_type_error_at_emit(
    executor: str, payload: Any, offender: str
) -> None:
    runtime = Rocketman()
    runtime.configure(storage="memory", executor=executor, worker_count=1)
    with pytest.raises(TypeError, match=offender):
        runtime.emit("bad", payload)
    assert runtime.stats()["queued"] == 0
    runtime.shutdown(timeout=1)


@pytest.mark.parametrize("name", ["", None, 42, ["x"], "has space", "star*", "x" * 256])
def test_an_invalid_event_name_is_a_value_error(app: Rocketman, name: Any) -> None:
    with pytest.raises(ValueError, match="event name"):
        app.emit(name)


def test_configure_rejects_bad_values_clearly() -> None:
    runtime = Rocketman()
    with pytest.raises(ConfigurationError, match="worker_count must be at least 0"):
        runtime.configure(worker_count=-1)
    with pytest.raises(ConfigurationError, match="latency must be greater than 0"):
        runtime.configure(latency=0)
    with pytest.raises(TypeError, match="worker_cont"):
        runtime.configure(worker_cont=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="is not a storage"):
        runtime.configure(storage=object())


def test_unknown_storage_lists_what_is_installed_and_suggests() -> None:
    with pytest.raises(UnknownBackendError) as raised:
        Rocketman().configure(storage="memroy")
    message = str(raised.value)
    assert "memory (from rocketman-memory" in message
    assert "Did you mean 'memory'?" in message


def test_settings_come_from_the_environment_and_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMAN_WORKER_COUNT", "7")
    monkeypatch.setenv("ROCKETMAN_LATENCY", "0.25")
    monkeypatch.setenv("ROCKETMAN_DEBUG", "yes")
    monkeypatch.setenv("ROCKETMAN_RELAYS", "")
    monkeypatch.setenv("ROCKETMAN_MAX_RETRIES", "9")
    runtime = Rocketman()
    settings = runtime.configure(max_retries=1)
    assert (settings.worker_count, settings.latency, settings.debug, settings.max_retries) == (7, 0.25, True, 1)
    monkeypatch.setenv("ROCKETMAN_WORKER_COUNT", "many")
    with pytest.raises(ConfigurationError, match="ROCKETMAN_WORKER_COUNT='many': expected an integer"):
        runtime.configure()
    logging.getLogger("rocketman").setLevel(logging.NOTSET)


def test_storage_url_query_becomes_options() -> None:
    runtime = Rocketman()
    runtime.configure(storage="memory://?maxsize=2&full_timeout=0.1", worker_count=1, latency=0.2)
    release = threading.Event()
    started = threading.Event()

    @runtime.on_event("*")
    def slow(payload: Any) -> None:
        started.set()
        release.wait(10)

    runtime.emit("taken")  # the worker holds it
    assert started.wait(5)
    runtime.emit("a")
    runtime.emit("b")
    with pytest.raises(Exception, match="stayed full"):
        runtime.emit("c")
    release.set()
    runtime.shutdown(timeout=5)


def test_a_storage_rejecting_an_option_names_it_at_configure() -> None:
    """A bad option is an error at configure(), as the README says, not at the first emit."""
    for storage, named in (("memory://?colour=blue", "colour"), ("memory://?maxsize=abc", "maxsize")):
        with pytest.raises(ConfigurationError, match=named):
            Rocketman().configure(storage=storage, worker_count=0)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"storage_options": None}, "storage_options must be a dict of options, not None"),
    ({"storage_options": "abc"}, "storage_options must be a dict"),
    ({"executor_options": 5}, "executor_options must be a dict"),
    ({"relays": None}, "relays must be a list"),
    ({"relays": 5}, "relays must be a list"),
    ({"relays": [("redis", "pattern=x")]}, "a relay given as a pair is"),
    ({"latency": float("inf")}, "latency must be a finite number of seconds"),
    ({"shutdown_timeout": 1e12}, "shutdown_timeout must be a finite number of seconds"),
    ({"retry_backoff_max": float("inf")}, "retry_backoff_max must be a finite"),
])
def test_bad_settings_are_configuration_errors_that_name_them(
    settings: dict[str, Any], expected: str,
) -> None:
    runtime = Rocketman()
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(")):
        runtime.configure(**settings)
    runtime.configure(shutdown_timeout=0.5)
    assert runtime.shutdown() is True, "a refused configure left the runtime half set"


def test_a_bad_value_from_the_environment_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMAN_WORKER_COUNT", "-3")
    with pytest.raises(ConfigurationError,
                       match=r"ROCKETMAN_WORKER_COUNT='-3': worker_count must be at least 0, not -3"):
        Rocketman().configure()
    monkeypatch.setenv("ROCKETMAN_WORKER_COUNT", "2")
    monkeypatch.setenv("ROCKETMAN_LATENCY", "inf")
    with pytest.raises(ConfigurationError, match=r"ROCKETMAN_LATENCY='inf': latency must be a finite"):
        Rocketman().configure()


def test_debug_false_undoes_debug_true() -> None:
    root = logging.getLogger("rocketman")
    before = (root.level, list(root.handlers))
    runtime = Rocketman()
    runtime.configure(debug=True)
    assert root.level == logging.DEBUG
    runtime.configure(debug=False)
    assert (root.level, list(root.handlers)) == before, "debug=False left DEBUG logging on"


def test_producer_only_process_emits_without_starting_workers() -> None:
    """On memory, a process without workers hosts no consumer: its events are counted and dropped."""
    runtime = Rocketman()
    runtime.configure(worker_count=0)
    runtime.on_event("emitted.only")(lambda payload: None)
    before = {t.name for t in threading.enumerate()}
    runtime.emit("emitted.only")
    assert {t.name for t in threading.enumerate()} == before
    assert runtime.stats() == {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 0,
                               "dropped": 1}
    assert runtime.subscriptions() == [], "a process without workers registered subscriptions"
    assert runtime.drain(timeout=0.2) is True
    runtime.shutdown(timeout=0)


def test_workers_start_lazily_on_the_first_emit() -> None:
    runtime = Rocketman()
    runtime.configure(worker_count=2, latency=0.2)
    assert not [t for t in threading.enumerate() if t.name.startswith("rocketman-worker")]
    runtime.emit("wake")
    assert len([t for t in threading.enumerate() if t.name.startswith("rocketman-worker")]) == 2
    runtime.shutdown(timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("rocketman-worker")]


def test_shutdown_counts_what_it_leaves_in_memory(caplog: pytest.LogCaptureFixture) -> None:
    runtime = Rocketman()
    runtime.configure(worker_count=1, latency=0.2, batch_size=1)
    release = threading.Event()
    started = threading.Event()

    @runtime.on_event("never.handled")
    def stuck(payload: Any) -> None:
        started.set()
        release.wait(10)

    runtime.emit("never.handled", "held")
    assert started.wait(5)
    for number in range(3):
        runtime.emit("never.handled", number)
    with caplog.at_level(logging.WARNING, logger="rocketman"):
        assert runtime.shutdown(timeout=0.1) is False
    release.set()
    (record,) = [r for r in caplog.records if "not handled" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "4 events not handled" in record.getMessage()
    assert "queued 3, reserved 1" in record.getMessage()


def test_log_lines_count_one_thing_as_one(caplog: pytest.LogCaptureFixture) -> None:
    """Hardening 15: "1 events" and "1 workers" read as a bug to the person on call."""
    runtime = Rocketman()
    release = threading.Event()
    started = threading.Event()

    @runtime.on_event("held")
    def stuck(payload: Any) -> None:
        started.set()
        release.wait(10)

    with caplog.at_level(logging.INFO, logger="rocketman"):
        runtime.configure(worker_count=1, latency=0.2, batch_size=1)
        runtime.emit("held")
        assert started.wait(5)
        assert runtime.shutdown(timeout=0.1) is False
    release.set()
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 worker" in m and "1 workers" not in m for m in messages if "ready" in m), messages
    assert any("stopped with 1 event not handled" in m for m in messages), messages


def test_debug_logs_each_emit_and_dispatch(caplog: pytest.LogCaptureFixture) -> None:
    runtime = Rocketman()
    runtime.configure(executor="inline", debug=True)
    runtime.on_event("traced", name="tracer")(lambda payload: None)
    with caplog.at_level(logging.DEBUG, logger="rocketman"):
        event_id = runtime.emit("traced")
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"emitted traced (id {event_id})" in m for m in messages)
    assert any(f"dispatching traced (id {event_id}) to tracer" in m for m in messages), messages
    logging.getLogger("rocketman").setLevel(logging.NOTSET)


def test_inline_runs_consumers_before_emit_returns_and_raises_their_error() -> None:
    runtime = Rocketman()
    runtime.configure(executor="inline")
    calls: list[str] = []

    @runtime.on_event("boom")
    def first(payload: Any) -> None:
        calls.append("first")
        raise RuntimeError("consumer failed")

    @runtime.on_event("boom")
    def second(payload: Any) -> None:
        calls.append("second")

    with pytest.raises(RuntimeError, match="consumer failed"):
        runtime.emit("boom")
    assert calls == ["first", "second"]


def test_emit_many_validates_everything_before_storing_anything(app: Rocketman) -> None:
    seen = Seen()
    app.on_event("batch")(seen.add)
    with pytest.raises(TypeError):
        app.emit_many([("batch", 1), ("batch", {2})])
    ids = app.emit_many([("batch", 1), ("batch", 2)])
    assert len(set(ids)) == 2
    assert sorted(seen.wait_for(2)) == [1, 2]


def test_shutdown_does_not_wait_out_the_latency() -> None:
    runtime = Rocketman()
    runtime.configure(worker_count=3, latency=30)
    runtime.emit("wake")
    assert runtime.drain(timeout=5)
    started = time.monotonic()
    assert runtime.shutdown(timeout=10)
    assert time.monotonic() - started < 2


class _StorageOfContract1:
    """A storage written for rocketman 0.1: push(message), reserve(timeout), no subscriptions."""

    durable = False
    closed = False

    def push(self, message: bytes) -> None: ...
    def push_many(self, messages: Any) -> None: ...
    def reserve(self, timeout: float, max_count: int = 1) -> list[Any]:
        return []
    def ack(self, deliveries: Any) -> None: ...
    def renew(self, deliveries: Any) -> None: ...
    def retry_later(self, message: bytes, delay: float) -> None: ...
    def dead_letter(self, message: bytes, reason: str) -> None: ...
    def dead_letters(self, limit: Any = None) -> list[Any]:
        return []
    def replay_dead_letters(self, replacements: Any) -> int:
        return 0
    def purge_dead_letters(self, ids: Any = None) -> int:
        return 0
    def stats(self) -> dict[str, int]:
        return {}
    def close(self) -> None:
        type(self).closed = True


def test_a_storage_written_for_contract_1_is_refused_with_what_it_lacks() -> None:
    """Passed as an object or selected by name: refused at configure, and closed."""
    with pytest.raises(ConfigurationError) as raised:
        Rocketman().configure(storage=_StorageOfContract1())
    message = str(raised.value)
    assert "storage contract 1" in message and "needs contract 2" in message
    assert "subscribe()" in message and "push(name, message)" in message
    assert "CONTRIBUTING.md" in message

    class OldPlugin:
        @hookimpl
        def register_storages(self, register: Any) -> None:
            register("old", _StorageOfContract1)

    app = Rocketman()
    app.register_plugin(OldPlugin(), name="old-plugin")
    with pytest.raises(ConfigurationError,
                       match=r"storage 'old' \(from registered in code\) implements rocketman's storage contract 1"):
        app.configure(storage="old", worker_count=0)
    assert _StorageOfContract1.closed, "the refused storage was not closed"


def test_a_urls_query_is_kept_as_written() -> None:
    """+ stays a plus and # stays in the value (an MQTT filter), unlike parse_qsl."""
    from rocketman_core import url_query

    assert url_query("mqtt://h:1883?topics=a/%23,b/+/c&name=x+y&plain=1#frag") == (
        "mqtt://h:1883", {"topics": "a/#,b/+/c", "name": "x+y", "plain": "1#frag"})
    assert url_query("memory://") == ("memory://", {})


def test_rocketman_relays_takes_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON list in ROCKETMAN_RELAYS, for URLs with commas and (name, {options}) pairs."""
    monkeypatch.setenv("ROCKETMAN_RELAYS", '["redis://h/0?pattern=a.*,b.*", ["redis", {"pattern": "c.*"}]]')
    from rocketman_core import Settings

    resolved = Settings.resolve({})
    assert resolved.relays == ("redis://h/0?pattern=a.*,b.*", ("redis", {"pattern": "c.*"}))
    monkeypatch.setenv("ROCKETMAN_RELAYS", "[not json")
    with pytest.raises(ConfigurationError, match="ROCKETMAN_RELAYS"):
        Settings.resolve({})


def test_a_password_with_a_raw_at_sign_is_masked_whole() -> None:
    from rocketman_core import mask_url

    assert mask_url("redis://user:p@ss@Tail9@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_url("could not reach rediss://:se@cret@cache.internal/1") == (
        "could not reach rediss://:***@cache.internal/1")
