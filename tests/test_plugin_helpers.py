"""The helpers plugin authors import: ``rocketman_core.plugin`` and ``rocketman_core.testing``."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import rocketman_core
from rocketman_core import plugin
from rocketman_core.plugin import (
    RateLimitedLog,
    option_boolean,
    option_integer,
    option_number,
    option_seconds,
    pattern_regex,
    relay_payload,
    validate_event_name,
)
from rocketman_core.testing import (
    EmitRecorder,
    ServerMissing,
    ServerProcess,
    free_port,
    wait_until,
)

# -- event names ----------------------------------------------------------------


def test_validate_event_name_is_the_rule_emit_applies() -> None:
    """The plugin's check and emit's agree, on good names and bad ones."""
    assert validate_event_name("orders.paid") == "orders.paid"
    assert validate_event_name("x" * 255) == "x" * 255
    app = rocketman_core.Rocketman()
    app.configure(storage="memory", executor="inline", worker_count=0)
    try:
        for bad in ("", "has space", "orders.*", "x" * 256, "tab\there"):
            with pytest.raises(ValueError, match="invalid event name") as ours:
                validate_event_name(bad)
            with pytest.raises(ValueError) as emits:
                app.emit(bad)
            assert str(ours.value) == str(emits.value)
        with pytest.raises(ValueError, match="must be a string"):
            validate_event_name(42)
    finally:
        app.shutdown(timeout=1)


# -- the relay payload rule -------------------------------------------------------

PAYLOADS: list[tuple[bytes | str, Any]] = [
    ('{"order": 7, "items": ["a"]}', {"order": 7, "items": ["a"]}),
    ("[1, 2]", [1, 2]),
    ('"quoted"', "quoted"),
    ("42", 42),
    ("2.5", 2.5),
    ("null", None),
    ("true", True),
    ("plain text", "plain text"),
    ("", ""),
    ("not {json", "not {json"),
    ("NaN", "NaN"),
    ("-Infinity", "-Infinity"),
    ("1e400", "1e400"),
    ('{"total": -1e999}', '{"total": -1e999}'),
    ("héllo ✓".encode(), "héllo ✓"),
    (b'{"a": 1}', {"a": 1}),
]


def test_pattern_regex_matches_what_the_core_delivers_to_a_consumer_of_that_pattern() -> None:
    patterns = ["user.signed_up", "user.*", "*", "order.*.paid", "a.b", "a*c"]
    names = ["user.signed_up", "user.", "order.1.paid", "order.paid", "a.b", "aXb", "abc", "ac", "other"]
    app = rocketman_core.Rocketman()
    app.configure(storage="memory", executor="inline", worker_count=0)
    delivered: set[tuple[str, str]] = set()
    try:
        for pattern in patterns:
            app.on_event(pattern, name=f"p{patterns.index(pattern)}")(
                lambda payload, event, pattern=pattern: delivered.add((pattern, event.name)))
        for name in names:
            app.emit(name)
    finally:
        app.shutdown(timeout=5)
    matched = {(p, n) for p in patterns for n in names if pattern_regex(p).match(n)}
    assert matched == delivered


@pytest.mark.parametrize(("data", "payload"), PAYLOADS)
def test_relay_payload_is_strict_json_or_the_text(data: bytes | str, payload: Any) -> None:
    """JSON if it parses as strict JSON, else the text unchanged; bytes are UTF-8."""
    assert relay_payload(data) == payload
    assert type(relay_payload(data)) is type(payload)


def test_relay_payload_keeps_json_nested_too_deep_as_text() -> None:
    text = "[" * 100_000 + "]" * 100_000
    assert relay_payload(text) == text


def test_relay_payload_refuses_bytes_that_are_not_utf8() -> None:
    """A ``UnicodeDecodeError``: the relay drops the message, never emits bytes."""
    with pytest.raises(UnicodeDecodeError):
        relay_payload(b"\xff\xfe broken")


def test_both_relays_follow_the_one_payload_rule() -> None:
    """The Redis relay and the NATS example turn every body into what relay_payload says."""
    from rocketman_nats._messages import Dropped as NatsDropped
    from rocketman_nats._messages import payload_of
    from rocketman_relay_redis._messages import Dropped as RedisDropped
    from rocketman_relay_redis._messages import Relayed, translate

    for data, payload in PAYLOADS:
        body = data.encode() if isinstance(data, str) else data
        relayed = translate("chan", body, prefix="", max_bytes=1 << 20)
        assert isinstance(relayed, Relayed) and relayed.payload == payload
        assert payload_of(body, 1 << 20) == payload
    assert isinstance(translate("chan", b"\xff", prefix="", max_bytes=10), RedisDropped)
    with pytest.raises(NatsDropped):
        payload_of(b"\xff", 10)


# -- options ----------------------------------------------------------------------


def test_option_seconds_takes_numbers_and_their_text() -> None:
    assert option_seconds("lease", "2.5") == 2.5
    assert option_seconds("lease", 3) == 3.0
    assert option_seconds("lease", " 1 ") == 1.0
    assert option_seconds("lease", None, default=30.0) == 30.0
    assert option_seconds("park_max_age", "0", zero_means="no limit") == 0.0
    assert option_seconds("latency", 0.01, minimum=0.01) == 0.01


@pytest.mark.parametrize(("value", "kwargs", "message"), [
    ("soon", {}, "option 'lease' must be a finite number of seconds, at least 0, not 'soon'"),
    (-1, {}, "option 'lease' must be a finite number of seconds, at least 0, not -1"),
    (0, {"exclusive": True}, "option 'lease' must be a finite number of seconds, more than 0, not 0"),
    ("nan", {}, "not 'nan'"),
    (float("inf"), {}, "not inf"),
    (True, {}, "not True"),
    (None, {}, "not None"),
    (1e300, {}, "at most"),
    ("0.001", {"minimum": 0.01}, "at least 0.01, not '0.001'"),
    (-1, {"zero_means": "no limit"}, "at least 0 (0: no limit), not -1"),
    ("x", {"backend": "redis storage"}, "redis storage: option 'lease' must be"),
])
def test_option_seconds_names_the_option_the_value_and_what_it_must_be(
    value: Any, kwargs: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ValueError) as raised:
        option_seconds("lease", value, **kwargs)
    assert message in str(raised.value)


def test_option_number_has_no_upper_bound_beyond_finite() -> None:
    assert option_number("ratio", "1e300") == 1e300
    with pytest.raises(ValueError, match="option 'ratio' must be a finite number, at least 0"):
        option_number("ratio", "-0.5")


def test_option_integer_takes_integers_and_their_text_not_floats_nor_bools() -> None:
    assert option_integer("max_bytes", "100", minimum=1) == 100
    assert option_integer("park_limit", 0) == 0
    assert option_integer("park_limit", None, default=100_000) == 100_000
    for bad in ("lots", 2.0, 2.5, True, "1e3", None):
        with pytest.raises(ValueError, match=r"option 'max_bytes' must be an integer, at least 1, not"):
            option_integer("max_bytes", bad, minimum=1)
    with pytest.raises(ValueError, match=r"at least 0 \(0: park nothing\), not -1"):
        option_integer("park_limit", -1, zero_means="park nothing")


def test_option_boolean_takes_the_usual_words() -> None:
    for text in ("1", "true", "Yes", " ON "):
        assert option_boolean("debug", text) is True
    for text in ("0", "false", "No", "off"):
        assert option_boolean("debug", text) is False
    assert option_boolean("debug", False) is False
    assert option_boolean("debug", None, default=True) is True
    for bad in ("maybe", 2, 1, ""):
        with pytest.raises(ValueError, match=r"option 'debug' must be true or false \(1, true, yes, "
                                             r"on; 0, false, no, off\), not"):
            option_boolean("debug", bad)


def test_an_option_value_with_a_password_is_masked_in_the_message() -> None:
    with pytest.raises(ValueError) as raised:
        option_seconds("timeout", "redis://user:s3cret@host/0")
    assert "s3cret" not in str(raised.value)


# -- the rate-limited log ---------------------------------------------------------


def test_rate_limited_log_lets_one_record_a_period_through_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("rocketman.test.ratelimit")
    log = RateLimitedLog(logger, period=0.2)
    caplog.set_level(logging.DEBUG, logger=logger.name)
    began = time.monotonic()
    assert log.log("too_large", logging.WARNING, "dropped %s", "one") is True
    assert log.log("too_large", logging.WARNING, "dropped %s", "two") is False
    assert log.log("too_large", logging.WARNING, "dropped %s", "three") is False
    assert log.log("not_utf8", logging.ERROR, "bad %s", "bytes") is True  # a key of its own
    assert log.held_back("too_large") == 2
    wait_until(lambda: time.monotonic() >= began + 0.2, 5, "the clock to pass the period")
    assert log.log("too_large", logging.WARNING, "dropped %s", "four") is True
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger.name]
    assert records == [
        (logging.WARNING, "dropped one"),
        (logging.DEBUG, "dropped two"),
        (logging.DEBUG, "dropped three"),
        (logging.ERROR, "bad bytes"),
        (logging.WARNING, "dropped four (2 more of these held back since the last record)"),
    ]
    assert log.held_back("too_large") == 0


def test_rate_limited_log_may_drop_what_it_holds_back(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("rocketman.test.ratelimit.quiet")
    log = RateLimitedLog(logger, period=60, held_back_level=None)
    caplog.set_level(logging.DEBUG, logger=logger.name)
    for _ in range(5):
        log.log("k", logging.WARNING, "flood")
    assert [r.getMessage() for r in caplog.records if r.name == logger.name] == ["flood"]


def test_rate_limited_log_is_thread_safe() -> None:
    """Eight threads logging one key: exactly one record goes out, the others are counted."""
    log = RateLimitedLog(logging.getLogger("rocketman.test.ratelimit.threads"), period=60,
                         held_back_level=None)
    outcomes: list[bool] = []
    start = threading.Barrier(8)

    def run() -> None:
        start.wait()
        for _ in range(100):
            outcomes.append(log.log("k", logging.WARNING, "x"))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert outcomes.count(True) == 1 and log.held_back("k") == 799


# -- errors and types -------------------------------------------------------------


def test_storage_unavailable_is_one_type_for_every_storage() -> None:
    """The core's base, exported twice; the Redis storage's error is one; a ConnectionError too."""
    from rocketman_redis import StorageUnavailable as RedisUnavailable

    assert plugin.StorageUnavailable is rocketman_core.StorageUnavailable
    assert issubclass(rocketman_core.StorageUnavailable, rocketman_core.RocketmanError)
    assert issubclass(rocketman_core.StorageUnavailable, ConnectionError)
    assert issubclass(RedisUnavailable, rocketman_core.StorageUnavailable)
    with pytest.raises(rocketman_core.StorageUnavailable):
        raise RedisUnavailable("redis storage: unreachable")


def test_register_is_the_callback_the_registration_hooks_receive() -> None:
    """A plugin typed with ``plugin.Register`` registers through the real hook."""
    seen: list[str] = []

    class Plugin:
        @plugin.hookimpl
        def register_executors(self, register: plugin.Register) -> None:
            seen.append(type(register).__name__)
            register("helpers-test-inline", lambda **options: None)

    app = rocketman_core.Rocketman()
    app.register_plugin(Plugin(), name="helpers-test")
    app.plugins.load()
    assert seen and app.plugins.backend("executor", "helpers-test-inline").name == "helpers-test-inline"


def test_the_plugin_module_exports_what_its_docstring_lists() -> None:
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None
        assert name in (plugin.__doc__ or "") or name in ("EmitFunction", "mask_url", "url_query")


# -- waiting ----------------------------------------------------------------------


def test_wait_until_returns_as_soon_as_the_condition_holds() -> None:
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    began = time.monotonic()
    wait_until(flag.is_set, 5, "the flag was never set")
    assert time.monotonic() - began < 4


def test_wait_until_fails_with_its_message_at_the_deadline() -> None:
    made: list[int] = []

    def message() -> str:
        made.append(1)
        return "the state then: 7 queued"

    began = time.monotonic()
    with pytest.raises(AssertionError, match=r"^the state then: 7 queued \(waited 0.1s\)$"):
        wait_until(lambda: False, 0.1, message)
    assert 0.1 <= time.monotonic() - began < 2
    assert made == [1], "the message is made once, at the deadline"
    with pytest.raises(AssertionError, match="never"):
        wait_until(lambda: False, 0, "never")


# -- the emit recorder ------------------------------------------------------------


def test_emit_recorder_records_calls_from_other_threads_and_waits_for_them() -> None:
    emitted = EmitRecorder()
    worker = threading.Thread(target=lambda: [emitted(f"e.{n}", {"n": n}) for n in range(3)])
    worker.start()
    assert emitted.wait_for_count(3) == [("e.0", {"n": 0}), ("e.1", {"n": 1}), ("e.2", {"n": 2})]
    worker.join(5)
    assert emitted.threads == {worker.ident}
    assert emitted.wait_for(lambda: len(emitted.calls) == 3, 0)
    with pytest.raises(AssertionError, match=r"emit was called 3 times in 0\.05s, 4 calls were expected"):
        emitted.wait_for_count(4, timeout=0.05)


# -- server processes -------------------------------------------------------------

HTTP_SERVER = ["-m", "http.server", "--bind", "{host}", "--directory", "{directory}", "{port}"]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_server_process_starts_on_a_free_port_and_restarts_on_the_same_one() -> None:
    with ServerProcess(sys.executable, HTTP_SERVER) as server:
        assert server.running and accepts(server.port)
        assert server.directory.is_dir()
        first = server.process
        server.restart()
        assert server.process is not first and accepts(server.port), "not back on its port"
        server.stop()
        assert not server.running and not accepts(server.port)
        server.stop()  # idempotent
        server.start()
        assert accepts(server.port)
        process = server.process
        server.kill()
        assert not server.running and process is not None and process.returncode is not None
        assert not accepts(server.port)
    assert not server.directory.exists(), "close() leaves no directory behind"


def test_a_server_process_can_be_frozen_and_thawed() -> None:
    with ServerProcess(sys.executable, HTTP_SERVER) as server:
        assert server.process is not None
        status = Path(f"/proc/{server.process.pid}/status")
        server.freeze()
        wait_until(lambda: "stopped" in status.read_text(), 5, "the process was not stopped")
        server.thaw()
        wait_until(lambda: "stopped" not in status.read_text(), 5, "the process was not resumed")


def test_a_server_that_exits_at_start_shows_its_log() -> None:
    server = ServerProcess(sys.executable, ["-c", "print('no such option: --bogus'); raise SystemExit(3)"])
    try:
        with pytest.raises(RuntimeError, match=r"(?s)exited at start \(code 3\).*no such option"):
            server.start()
        assert not server.running
    finally:
        server.close()


def test_a_server_that_never_listens_is_killed_at_the_deadline() -> None:
    server = ServerProcess(sys.executable, ["-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(RuntimeError, match=r"did not accept connections on 127.0.0.1:\d+ within 0.3s"):
            server.start(timeout=0.3)
        assert server.process is None
    finally:
        server.close()


def test_a_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCKETMAN_TEST_SERVER", raising=False)
    with pytest.raises(ServerMissing) as raised:
        ServerProcess("rocketman-no-such-server", install_hint="apt-get install no-such-server",
                      binary_env="ROCKETMAN_TEST_SERVER")
    assert str(raised.value) == (
        "rocketman-no-such-server is not installed, and these tests need a real server. "
        "Install it (apt-get install no-such-server) or set ROCKETMAN_TEST_SERVER to its path.")
    monkeypatch.setenv("ROCKETMAN_TEST_SERVER", sys.executable)
    assert ServerProcess("rocketman-no-such-server", binary_env="ROCKETMAN_TEST_SERVER").binary == sys.executable


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_the_redis_server_harness_lives_with_the_redis_distributions() -> None:
    """``RedisServer`` is a ServerProcess of rocketman-relay-redis; the core has none."""
    from rocketman_relay_redis.testing import RedisServer, RedisServerMissing

    import rocketman_core.testing as testing

    assert issubclass(RedisServer, ServerProcess) and issubclass(RedisServerMissing, ServerMissing)
    assert not hasattr(testing, "RedisServer")
    with RedisServer(appendonly=False) as server:
        assert server.ping() and server.url == f"redis://127.0.0.1:{server.port}/0"
        server.restart()
        assert server.ping()
