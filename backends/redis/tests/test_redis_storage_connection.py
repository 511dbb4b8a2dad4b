"""Choosing the Redis storage, its options, and what happens when Redis is not there."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rocketman_redis import RedisStorage, StorageError, StorageUnavailable
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import ConfigurationError, Rocketman, RocketmanError, Subscription
from rocketman_core.testing import free_port

SECRET = "s3cret-Passw0rd"
#: One subscription taking every event, as a worker process would register it.
EVERYTHING = Subscription("s", ("*",))
EMPTY = {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 0, "dropped": 0}


def _build(spec: str, **options: Any) -> Any:
    """Build a storage exactly as configuration does: by name or URL, options as given."""
    return Rocketman().plugins.build("storage", spec, options)


@pytest.fixture
def redis_silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung server."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True, name="rocketman-test-silent-server")
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture
def redis_unix_server(tmp_path: Path) -> Iterator[Path]:
    """A redis-server listening on a unix socket only."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (apt-get install redis-server)"
    path = tmp_path / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield path
    finally:
        process.terminate()
        process.wait(10)


# -- selection and options ---------------------------------------------------------


def test_discovering_the_plugin_does_not_import_redis_py() -> None:
    """Importing the plugin module (what discovery does) leaves redis-py unimported until a build."""
    code = ("import sys, rocketman_redis; assert 'redis' not in sys.modules, 'imported'; "
            "rocketman_redis.build_storage(url='redis://127.0.0.1:1/0'); assert 'redis' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_a_url_selects_the_storage_with_namespace_and_lease_from_its_query(
    rocketman_redis_server: RedisServer, redis_raw: redis.Redis, redis_delete_namespace: Any,
) -> None:
    """``redis://host:port/db?namespace=...&lease=...``: options arrive as strings and are applied."""
    storage = _build(f"{rocketman_redis_server.url}?namespace=from-url&lease=7.5")
    try:
        assert isinstance(storage, RedisStorage)
        assert storage.keys.namespace == "from-url"
        assert storage.lease == 7.5
        assert storage.renew_interval == 2.5
        storage.subscribe([EVERYTHING], "test-host")
        storage.push("hello.sent", b"hello")
        assert storage.stats()["queued"] == 1  # counting routes what waits in the inbox first
        assert redis_raw.lrange("{from-url}:sub:s:queue", 0, -1) == [b"hello"]
    finally:
        storage.close()
        redis_delete_namespace(redis_raw, storage.keys)


def test_the_name_redis_reads_the_url_from_the_environment(
    rocketman_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``storage="redis"`` connects to ``ROCKETMAN_REDIS_URL``; the namespace defaults to rocketman."""
    monkeypatch.setenv("ROCKETMAN_REDIS_URL", rocketman_redis_server.url)
    storage = _build("redis", namespace="from-env")
    default = _build("redis")
    try:
        assert storage.url == rocketman_redis_server.url
        assert storage.stats() == EMPTY
        assert default.keys.namespace == "rocketman"
    finally:
        storage.close()
        default.close()


def test_rediss_and_unix_urls_select_the_redis_storage_and_unix_sockets_work(
    redis_unix_server: Path,
) -> None:
    """``rediss://`` (TLS) and ``unix://`` are schemes of this storage; a unix socket carries it."""
    plugins = Rocketman().plugins
    assert plugins.backend("storage", "rediss").name == "redis"
    assert plugins.backend("storage", "unix").name == "redis"
    storage = _build(f"unix://{redis_unix_server}?namespace=sock&lease=5")
    try:
        storage.subscribe([EVERYTHING], "test-host")
        storage.push("socket.event", b"through the socket")
        taken = storage.reserve(("s",), 5)
        assert [d.message for d in taken] == [b"through the socket"]
        storage.ack(taken)
    finally:
        storage.close()


@pytest.mark.parametrize(("url", "named"), [
    ("{url}?leese=3", "unknown option 'leese'.*did you mean 'lease'"),
    ("{url}?lease=soon", "lease"),
    ("{url}?lease=-1", "lease"),
    ("{url}?namespace={{braces}}", "namespace"),
    ("{url}?socket_timout=3", "unknown option 'socket_timout'.*did you mean 'socket_timeout'"),
    ("redis://127.0.0.1:6379/abc", "the database in the URL must be a number, not 'abc'"),
])
def test_bad_options_are_a_configuration_error_naming_them_at_configure(
    rocketman_redis_server: RedisServer, url: str, named: str,
) -> None:
    """An unknown option or a bad value fails at configure(), naming it; nothing connects."""
    with pytest.raises(ConfigurationError, match=named):
        Rocketman().configure(storage=url.format(url=rocketman_redis_server.url), worker_count=0)


@pytest.mark.parametrize("query", [
    "ssl_cert_reqs=none", "client_name=billing", "health_check_interval=5", "password=",
    "socket_keepalive=true",
])
def test_redis_pys_own_url_parameters_pass_through_configure_the_cli_and_the_environment(
    rocketman_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, query: str,
) -> None:
    """What RedisStorage(url=...) takes, configure(), ROCKETMAN_STORAGE and --storage take too."""
    import uuid

    url = f"{rocketman_redis_server.url}?namespace=passthrough-{uuid.uuid4().hex[:8]}&{query}"
    if query.startswith("ssl_"):
        # No TLS served here: that configure() takes the option is what this checks.
        Rocketman().configure(storage=url, worker_count=0)
        return
    app = Rocketman()
    app.configure(storage=url, worker_count=0)
    app.emit("passing.through")
    assert app.stats()["parked"] == 1
    app.shutdown(timeout=1)
    monkeypatch.setenv("ROCKETMAN_STORAGE", url)
    Rocketman().configure(worker_count=0)


def test_an_existing_client_is_used_and_left_open(
    rocketman_redis_server: RedisServer, redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """``client=redis.Redis(...)`` (also ``storage_options={"client": ...}``); closing leaves it open."""
    client = redis.Redis.from_url(rocketman_redis_server.url)
    storage = redis_storage_factory(url=None, client=client)
    storage.subscribe([EVERYTHING], "test-host")
    storage.push("client.event", b"via client")
    assert storage.stats()["queued"] == 1
    storage.close()
    assert client.ping(), "the storage closed a client it did not own"
    app = Rocketman()
    app.configure(storage="redis", storage_options={"client": client,
                                                    "namespace": storage.keys.namespace},
                  worker_count=0)
    assert app.stats()["queued"] == 1
    app.shutdown(timeout=1)
    decoding = redis.Redis.from_url(rocketman_redis_server.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStorage(client=decoding)
    client.close()
    decoding.close()


# -- Redis not there ---------------------------------------------------------------


def test_push_to_a_refusing_port_raises_the_clear_error_at_once_with_credentials_masked() -> None:
    """Nothing listens: StorageUnavailable (a RocketmanError) at once, saying where and what to do."""
    port = free_port()
    storage = RedisStorage(f"redis://alice:{SECRET}@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        storage.push("some.event", b"lost?")
    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert isinstance(raised.value, RocketmanError) and isinstance(raised.value, ConnectionError)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message and "redis-server" in message
    assert SECRET not in message and SECRET not in repr(storage)
    storage.close()


def test_push_and_reserve_on_a_hung_server_fail_within_the_bound_never_hang(
    redis_silent_server: int,
) -> None:
    """A server that accepts and never answers: the timeouts bound emit and reserve."""
    storage = RedisStorage(f"redis://127.0.0.1:{redis_silent_server}/0",
                           connect_timeout=0.5, socket_timeout=0.5)
    for operation in (lambda: storage.push("some.event", b"x"),
                      lambda: storage.subscribe([EVERYTHING], "test-host"),
                      lambda: storage.reserve(("s",), 5)):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="unreachable"):
            operation()
        elapsed = time.monotonic() - started
        assert elapsed < 2 * (0.5 + 0.5) + 0.5, f"failed only after {elapsed:.1f}s"
    storage.close()


def test_wrong_credentials_are_an_error_that_does_not_show_them() -> None:
    """Redis refuses the password: a StorageError that says so, without the password."""
    with RedisServer(appendonly=False) as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("requirepass", "the-right-one")
        storage = RedisStorage(f"redis://default:{SECRET}@127.0.0.1:{server.port}/0")
        with pytest.raises(StorageError, match="refused the credentials") as raised:
            storage.push("some.event", b"x")
        assert not isinstance(raised.value, StorageUnavailable)
        assert SECRET not in str(raised.value) and SECRET not in repr(storage)
        storage.close()
        allowed = RedisStorage(f"redis://default:the-right-one@127.0.0.1:{server.port}/0")
        allowed.subscribe([EVERYTHING], "test-host")
        allowed.push("some.event", b"x")
        assert allowed.stats()["queued"] == 1
        allowed.close()


def test_credentials_never_appear_in_worker_logs_or_cli_output(
    caplog: pytest.LogCaptureFixture, redis_wait_for: Any,
) -> None:
    """Workers facing a dead Redis log errors, and the CLI prints one, without the password."""
    url = f"redis://alice:{SECRET}@127.0.0.1:{free_port()}/0?lease=1"
    app = Rocketman()
    app.configure(storage=url, worker_count=2, latency=0.2)

    @app.on_event("anything.*", name="credentials-test")
    def handler(payload: Any) -> None:  # never called: there is no Redis
        raise AssertionError("handled an event from nowhere")

    with caplog.at_level(logging.DEBUG, logger="rocketman"):
        app.start()
        # Registering the consumer's subscription fails, then every reserve does.
        redis_wait_for(lambda: "could not register the subscriptions credentials-test"
                       in caplog.text and "failed to give work" in caplog.text, 10,
                       lambda: f"the workers never logged the unreachable storage:\n{caplog.text}")
        app.shutdown(timeout=1)
    assert "127.0.0.1" in caplog.text
    assert SECRET not in caplog.text
    result = subprocess.run(
        [str(Path(sys.executable).with_name("rocketman")), "stats", "--storage", url],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "unreachable" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_stopped_server_fails_reserve_promptly_and_the_storage_reconnects_to_what_it_kept(
    redis_wait_for: Any,
) -> None:
    """Redis stops under a blocked reserve: it raises; Redis restarts: the same storage goes on."""
    with RedisServer(appendonly=True) as server:
        storage = RedisStorage(server.url, namespace="restart", connect_timeout=0.5,
                               socket_timeout=1)
        storage.subscribe([EVERYTHING], "test-host")
        storage.push("restart.before", b"held across the restart")
        held = storage.reserve(("s",), 5)
        outcome: list[Any] = []

        def reserve_blocked() -> None:
            try:
                outcome.append(storage.reserve(("s",), 30))
            except Exception as error:
                outcome.append(error)

        thread = threading.Thread(target=reserve_blocked, daemon=True)
        thread.start()
        with redis.Redis.from_url(server.url) as admin:
            redis_wait_for(lambda: any(c.get("cmd") == "blpop" for c in admin.client_list()), 5,
                           lambda: "the reserve never blocked in BLPOP")
        stopped = time.monotonic()
        server.stop()
        thread.join(10)
        assert outcome and isinstance(outcome[0], StorageUnavailable), outcome
        assert time.monotonic() - stopped < 5
        server.start()
        # The subscription and the lease survived in Redis (append-only
        # file): the ack still lands, and events are still routed to it.
        assert [info.name for info in storage.subscriptions()] == ["s"]
        assert storage.stats()["reserved"] == 1
        storage.ack(held)
        storage.push("restart.after", b"after")
        assert [d.message for d in storage.reserve(("s",), 5)] == [b"after"]
        assert storage.stats() == {**EMPTY, "reserved": 1}
        storage.close()
