"""The relay inside a rocketman runtime: selected by configuration, end to end."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rocketman_relay_redis import RedisRelay
from rocketman_relay_redis.testing import RedisServer

import rocketman_core as rocketman
from rocketman_core import Rocketman

REDIS_CLI = "/usr/bin/redis-cli"


@pytest.fixture
def threaded_app() -> Iterator[Rocketman]:
    """A real runtime: memory storage, two worker threads; shut down at teardown."""
    app = Rocketman()
    yield app
    app.shutdown(timeout=5)


def subscribers(client: redis.Redis) -> int:
    """How many pattern subscriptions Redis counts now (the relay's, once it listens)."""
    return int(client.pubsub_numpat())


def test_ten_thousand_published_messages_all_reach_the_consumer(
    threaded_app: Rocketman, rocketman_redis_server: RedisServer, redis_publisher: redis.Redis,
    wait_for: Any, relay_threads: Any,
) -> None:
    seen: set[int] = set()
    lock = threading.Lock()

    @threaded_app.on_event("bulk.*")
    def count(payload: dict[str, int]) -> None:
        with lock:
            seen.add(payload["n"])

    threaded_app.configure(
        storage="memory", executor="threads", worker_count=2, latency=0.1,
        relays=[f"{rocketman_redis_server.url}?pattern=bulk.*&latency=0.1"],
    )
    threaded_app.start()
    wait_for(lambda: subscribers(redis_publisher) == 1, "the relay to subscribe")

    total = 10_000
    began = time.monotonic()
    for start in range(0, total, 1000):
        pipe = redis_publisher.pipeline(transaction=False)
        for n in range(start, start + 1000):
            pipe.publish(f"bulk.{n % 7}", f'{{"n": {n}}}')
        assert all(receivers == 1 for receivers in pipe.execute())
    wait_for(lambda: len(seen) == total, f"{total} events at the consumer", timeout=60)
    elapsed = time.monotonic() - began
    assert threaded_app.drain(timeout=10)
    assert seen == set(range(total))
    print(f"\n{total} messages from PUBLISH to consumer in {elapsed:.2f}s "
          f"({total / elapsed:,.0f}/s)")
    assert threaded_app.shutdown(timeout=5)
    wait_for(lambda: not relay_threads(), "the relay to stop with the runtime", 5)


def test_the_original_readme_example_redis_cli_publish_hello_payload(
    rocketman_redis_server: RedisServer, redis_publisher: redis.Redis, wait_for: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROCKETMAN_REDIS_URL", rocketman_redis_server.url)
    app = Rocketman()
    received: list[Any] = []
    with rocketman.using(app):

        @rocketman.on_event("hello")
        def hello(payload: Any) -> None:
            received.append(payload)

        rocketman.configure(relays=["redis"], worker_count=1, latency=0.1)
        rocketman.start()
        try:
            wait_for(lambda: subscribers(redis_publisher) == 1, "the relay to subscribe")
            result = subprocess.run(
                [REDIS_CLI, "-p", str(rocketman_redis_server.port), "PUBLISH", "hello", "payload"],
                capture_output=True, text=True, timeout=10, check=True,
            )
            assert result.stdout.strip() in ("1", "(integer) 1")
            wait_for(lambda: received == ["payload"], "the consumer of 'hello' to get 'payload'")
        finally:
            rocketman.shutdown(timeout=5)


def test_relays_from_the_environment_and_a_url_with_channels_and_prefix(
    rocketman_redis_server: RedisServer, redis_publisher: redis.Redis, wait_for: Any,
    monkeypatch: pytest.MonkeyPatch, relay_threads: Any,
) -> None:
    port = rocketman_redis_server.port
    monkeypatch.setenv("ROCKETMAN_RELAYS", f"redis://127.0.0.1:{port}/0?channels=svc.ping&prefix=svc.")
    app = Rocketman()
    received: list[tuple[str, Any]] = []
    app.on_event("*")(lambda payload, event: received.append((event.name, payload)))
    app.configure(executor="inline")
    app.start()
    try:
        wait_for(lambda: redis_publisher.pubsub_numsub("svc.ping")[0][1] == 1, "the relay to subscribe")
        redis_publisher.publish("svc.ping", '{"from": "billing"}')
        wait_for(lambda: received == [("ping", {"from": "billing"})], "the prefixed event")
    finally:
        app.shutdown(timeout=5)
    wait_for(lambda: not relay_threads(), "shutdown to stop the relay", 5)


def test_a_bad_relay_option_in_a_url_is_a_configuration_error(
    rocketman_redis_server: RedisServer,
) -> None:
    # At configure(), as every bad option: not when the relay starts.
    app = Rocketman()
    with pytest.raises(rocketman.ConfigurationError, match="max_bytes"):
        app.configure(executor="inline", relays=[f"{rocketman_redis_server.url}?max_bytes=huge"])
    with pytest.raises(rocketman.ConfigurationError, match="max_bytes"):
        app.configure(executor="inline", relays=[("redis", {"max_bytes": "huge"})])
    app.shutdown(timeout=1)


def test_one_rocketman_worker_with_the_relay_is_the_whole_deployment(
    rocketman_redis_server: RedisServer, redis_publisher: redis.Redis, wait_for: Any,
    tmp_path: Path,
) -> None:
    # The recommended deployment: one `rocketman worker --relay redis` process.
    (tmp_path / "relayed_consumers.py").write_text(textwrap.dedent("""
        import os
        import rocketman_core as rocketman

        @rocketman.on_event("hello")
        def hello(payload):
            with open(os.environ["RELAY_TEST_OUT"], "a") as out:
                out.write(repr(payload) + "\\n")
    """))
    out = tmp_path / "received.txt"
    env = {**os.environ, "ROCKETMAN_REDIS_URL": rocketman_redis_server.url,
           "RELAY_TEST_OUT": str(out), "ROCKETMAN_LATENCY": "0.1"}
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("rocketman")), "worker", "--relay", "redis",
         "--workers", "1", "relayed_consumers"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: subscribers(redis_publisher) == 1 or worker.poll() is not None,
                 "the worker's relay to subscribe", timeout=30)
        assert worker.poll() is None, "the worker exited early"
        subprocess.run([REDIS_CLI, "-p", str(rocketman_redis_server.port), "PUBLISH", "hello",
                        "payload"], check=True, capture_output=True, timeout=10)
        wait_for(lambda: out.exists() and out.read_text() == "'payload'\n",
                 "the worker's consumer to get the event")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
        assert worker.returncode == 0, output
        assert "redis relay on" in output and "stopped" in output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_a_relay_named_alone_listens_on_the_storages_redis(
    rocketman_redis_server: RedisServer, redis_publisher: redis.Redis, wait_for: Any,
    tmp_path: Path,
) -> None:
    """``--storage redis://HOST:PORT --relay redis`` listens on HOST:PORT, not on localhost:6379."""
    (tmp_path / "relayed_to_storage.py").write_text(textwrap.dedent("""
        import os
        import rocketman_core as rocketman

        @rocketman.on_event("hello", name="relayed.hello")
        def hello(payload):
            with open(os.environ["RELAY_TEST_OUT"], "a") as out:
                out.write(repr(payload) + "\\n")
    """))
    out = tmp_path / "received.txt"
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
    env.update(RELAY_TEST_OUT=str(out), ROCKETMAN_LATENCY="0.1",
               ROCKETMAN_REDIS_URL="redis://127.0.0.1:1/0")  # nothing there: it must not be used
    storage = f"{rocketman_redis_server.url}?namespace=relay-to-storage"
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("rocketman")), "worker", "--relay", "redis",
         "--storage", storage, "--workers", "1", "relayed_to_storage"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for(lambda: subscribers(redis_publisher) == 1 or worker.poll() is not None,
                 "the worker's relay to subscribe on the storage's server", timeout=30)
        assert worker.poll() is None, "the worker exited early"
        redis_publisher.publish("hello", "to the storage's server")
        wait_for(lambda: out.exists() and "to the storage's server" in out.read_text(),
                 "the worker's consumer to get the event")
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
        assert worker.returncode == 0, output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize("scheme", ["redis", "rediss", "unix"])
def test_the_relay_is_selected_by_name_and_url_scheme(scheme: str) -> None:
    backend = Rocketman().plugins.backend("relay", scheme)
    assert isinstance(backend.factory(url=f"{scheme}://localhost/0"), RedisRelay)
    assert backend.plugin.distribution == "rocketman-relay-redis"


def test_a_unix_socket_url_with_its_database(tmp_path: Path, wait_for: Any) -> None:
    socket_path = tmp_path / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(socket_path), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    app = Rocketman()
    received: list[Any] = []
    app.on_event("sock")(received.append)
    try:
        wait_for(socket_path.exists, "redis-server to open its socket")
        app.configure(executor="inline", relays=[f"unix://{socket_path}?db=2&channels=sock"])
        app.start()
        client = redis.Redis(unix_socket_path=str(socket_path))
        wait_for(lambda: client.pubsub_numsub("sock")[0][1] == 1, "the relay to subscribe")
        client.publish("sock", "over a socket")
        wait_for(lambda: received == ["over a socket"], "the event through the unix socket")
        client.close()
    finally:
        app.shutdown(timeout=5)
        server.kill()
        server.wait()


def test_a_flood_into_the_memory_storage_is_bounded_dropped_counted_and_logged_once(
    threaded_app: Rocketman, rocketman_redis_server: RedisServer, redis_publisher: redis.Redis,
    wait_for: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    """Hardening 27: a relay cannot grow a memory storage past relay_backlog_bytes."""
    release = threading.Event()
    handled: list[int] = []

    @threaded_app.on_event("flood", name="slow")
    def slow(payload: dict[str, Any]) -> None:
        release.wait(30)  # the consumers are behind: everything the relay emits waits
        handled.append(payload["n"])

    bound = 4 * 1024 * 1024
    threaded_app.configure(
        worker_count=1, batch_size=1, latency=0.1, relay_backlog_bytes=bound,
        relays=[f"{rocketman_redis_server.url}?pattern=flood&latency=0.1"],
    )
    threaded_app.start()
    wait_for(lambda: subscribers(redis_publisher) == 1, "the relay to subscribe")
    relay = threaded_app._relays[0]
    storage = threaded_app.storage
    assert isinstance(relay, RedisRelay) and storage is not None
    message_bytes = 512 * 1024
    total = 40  # 20 MiB published into a 4 MiB bound
    with caplog.at_level("WARNING", logger="rocketman"):
        for n in range(total):
            redis_publisher.publish("flood", json.dumps({"n": n, "pad": "x" * message_bytes}))
        # Received is counted before the message's outcome: wait for the outcomes.
        wait_for(lambda: relay.stats()["emitted"] + relay.stats()["dropped_backlog_full"] == total,
                 "an outcome (emitted or dropped) for every message at the relay")
        backlog = storage.backlog_bytes()  # type: ignore[attr-defined]
        stats = relay.stats()
    assert backlog <= bound + 2 * message_bytes, f"{backlog} bytes held, the bound is {bound}"
    assert stats["dropped_backlog_full"] >= total // 2, stats
    assert stats["received"] == total and stats["dropped"] == stats["dropped_backlog_full"], stats
    lines = [r for r in caplog.records if "relay_backlog_bytes" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING
    release.set()
    assert threaded_app.drain(timeout=30)
    assert len(handled) == stats["emitted"], "what the relay emitted is handled; only the excess dropped"
