"""The relay's connection over time: lost, half dead, back; its thread; its logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rocketman_relay_redis import RedisRelay
from rocketman_relay_redis.testing import RedisServer

MakeRelay = Callable[..., RedisRelay]


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop, restart and freeze."""
    with RedisServer(appendonly=False) as server:  # closing thaws one a test left frozen
        yield server


def publish_until_received(url: str, relay: RedisRelay, channel: str, payload: str,
                           emitted: Any, wait_for: Any) -> None:
    """Once Redis counts the relay as subscribed, PUBLISH once; wait for the event."""
    client = redis.Redis.from_url(url)
    try:
        wait_for(relay.wait_subscribed, "the relay to subscribe again", 10)
        assert client.publish(channel, payload) == 1
        wait_for(lambda: (channel, payload) in emitted.calls, f"the event {channel!r}")
    finally:
        client.close()


def test_after_a_redis_restart_the_relay_reconnects_by_itself(
    own_redis_server: RedisServer, make_redis_relay: MakeRelay, collected: Any, wait_for: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rocketman.relay.redis")
    emitted = collected()
    relay = make_redis_relay(url=own_redis_server.url)
    relay.start(emitted)
    publish_until_received(own_redis_server.url, relay, "before", "one", emitted, wait_for)

    own_redis_server.restart()
    wait_for(lambda: relay.stats()["disconnections"] == 1, "the relay to notice the restart")
    publish_until_received(own_redis_server.url, relay, "after", "two", emitted, wait_for)
    assert relay.stats()["connections"] == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "rocketman.relay.redis"]
    assert any("lost its connection" in m for m in messages), messages
    assert any("is back" in m for m in messages), messages


def test_a_relay_started_while_redis_is_down_connects_when_it_comes_up(
    own_redis_server: RedisServer, make_redis_relay: MakeRelay, collected: Any, wait_for: Any,
) -> None:
    own_redis_server.stop()
    emitted = collected()
    relay = make_redis_relay(url=own_redis_server.url)
    began = time.monotonic()
    relay.start(emitted)
    assert time.monotonic() - began < 0.5, "start() must return at once"
    wait_for(lambda: relay.stats()["failed_attempts"] >= 3, "the relay to keep trying")
    assert relay.running and relay.stats()["connections"] == 0
    own_redis_server.start()
    publish_until_received(own_redis_server.url, relay, "up", "yes", emitted, wait_for)


def test_a_frozen_redis_is_detected_by_the_health_check(
    own_redis_server: RedisServer, make_redis_relay: MakeRelay, collected: Any, wait_for: Any,
) -> None:
    # SIGSTOP keeps the TCP connection open but nothing answers: a half-dead
    # connection that a read without deadline would wait on forever.
    emitted = collected()
    relay = make_redis_relay(url=own_redis_server.url, health_check_interval=0.2, socket_timeout=0.5)
    relay.start(emitted)
    assert relay.wait_subscribed(10)
    own_redis_server.freeze()
    try:
        wait_for(lambda: relay.stats()["disconnections"] == 1,
                 "the relay to give up on the frozen connection", 5)
    finally:
        own_redis_server.thaw()
    publish_until_received(own_redis_server.url, relay, "thawed", "ok", emitted, wait_for)


def test_stop_ends_the_thread_in_time_and_leaves_none_behind(
    make_redis_relay: MakeRelay, collected: Any, relay_threads: Any,
) -> None:
    before = len(relay_threads())
    relay = make_redis_relay(latency=0.2)
    relay.start(collected())
    assert relay.wait_subscribed(10)
    assert len(relay_threads()) == before + 1
    began = time.monotonic()
    relay.stop(timeout=2)
    assert time.monotonic() - began < 1.0
    assert not relay.running and not relay.subscribed
    assert len(relay_threads()) == before
    relay.stop(timeout=2)  # idempotent


def test_stop_is_prompt_while_the_relay_waits_to_reconnect(
    make_redis_relay: MakeRelay, collected: Any,
) -> None:
    from rocketman_core.testing import free_port

    relay = make_redis_relay(url=f"redis://127.0.0.1:{free_port()}/0", backoff=30, backoff_max=30)
    relay.start(collected())
    began = time.monotonic()
    relay.stop(timeout=2)
    assert not relay.running
    assert time.monotonic() - began < 1.0


def test_start_twice_is_an_error_and_a_stopped_relay_starts_again(
    make_redis_relay: MakeRelay, redis_publisher: redis.Redis, collected: Any,
) -> None:
    emitted = collected()
    relay = make_redis_relay(channels="again")
    relay.start(emitted)
    with pytest.raises(RuntimeError, match="already running"):
        relay.start(emitted)
    relay.stop(timeout=2)
    relay.start(emitted)
    assert relay.wait_subscribed(10)
    redis_publisher.publish("again", "1")
    assert emitted.wait_for_count(1) == [("again", 1)]


def test_credentials_never_appear_in_logs_or_repr(
    make_redis_relay: MakeRelay, rocketman_redis_server: RedisServer, collected: Any,
    wait_for: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rocketman.relay.redis")
    url = f"redis://admin:s3cret-pw@127.0.0.1:{rocketman_redis_server.port}/0"
    relay = make_redis_relay(url=url)
    relay.start(collected())  # the server has no such user: AUTH fails, the relay retries
    wait_for(lambda: any("cannot connect" in r.getMessage() for r in caplog.records),
             "a log record of the failed connection")
    relay.stop(timeout=2)
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(relay)
    assert "s3cret-pw" not in text
    assert "admin:***@" in text


def test_a_client_factory_gives_the_connection_and_is_not_closed(
    rocketman_redis_server: RedisServer, make_redis_relay: MakeRelay, redis_publisher: redis.Redis,
    collected: Any,
) -> None:
    client = redis.Redis.from_url(rocketman_redis_server.url)
    emitted = collected()
    relay = make_redis_relay(client_factory=lambda: client, channels="factory")
    relay.start(emitted)
    assert relay.wait_subscribed(10)
    redis_publisher.publish("factory", '{"ok": true}')
    assert emitted.wait_for_count(1) == [("factory", {"ok": True})]
    relay.stop(timeout=2)
    assert client.ping()  # still the application's client
    client.close()


def test_a_second_relay_on_the_same_redis_is_warned_about(
    make_redis_relay: MakeRelay, collected: Any, wait_for: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rocketman.relay.redis")
    first = make_redis_relay()
    first.start(collected())
    assert first.wait_subscribed(10)
    second = make_redis_relay()
    second.start(collected())
    assert second.wait_subscribed(10)
    wait_for(lambda: any("1 other rocketman redis relay" in r.getMessage() for r in caplog.records),
             "a warning that two relays listen")


def test_bad_options_are_rejected_with_their_name() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        RedisRelay(max_bytes="lots")
    with pytest.raises(ValueError, match="health_check_interval"):
        RedisRelay(health_check_interval="-1")
    with pytest.raises(ValueError, match="not both"):
        RedisRelay(url="redis://localhost/0", client_factory=redis.Redis)
    with pytest.raises(ValueError, match="redis://"):
        RedisRelay(url="http://localhost:6379")


def test_the_url_comes_from_rocketman_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMAN_REDIS_URL", "redis://elsewhere:6380/3")
    assert RedisRelay().options.url == "redis://elsewhere:6380/3"
    monkeypatch.delenv("ROCKETMAN_REDIS_URL")
    assert RedisRelay().options.url == "redis://localhost:6379/0"


def test_importing_the_plugin_does_not_import_redis() -> None:
    code = (
        "import sys, rocketman_relay_redis\n"
        "rocketman_relay_redis.RedisRelay(pattern='x')\n"
        "assert 'redis' not in sys.modules, 'redis was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env={**os.environ})
    assert result.returncode == 0, result.stderr


def test_a_redis_acl_narrows_what_the_relay_may_hear(
    rocketman_redis_server: RedisServer, redis_publisher: redis.Redis, make_redis_relay: MakeRelay,
    collected: Any, wait_for: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    # The README's advice, as written there: a user whose ACL allows only
    # the channels orders.* and the commands the relay sends.
    caplog.set_level(logging.WARNING, logger="rocketman.relay.redis")
    redis_publisher.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "relay-orders", "on", ">pw", "resetchannels", "&orders.*",
        "+subscribe", "+psubscribe", "+ping", "+client",
    )
    try:
        url = f"redis://relay-orders:pw@127.0.0.1:{rocketman_redis_server.port}/0"
        refused = make_redis_relay(url=url)  # pattern "*": more than the ACL allows
        refused.start(collected())
        wait_for(lambda: refused.stats()["failed_attempts"] >= 2, "the refused relay to retry")
        assert refused.running and not refused.subscribed
        assert any("NoPermissionError" in r.getMessage() for r in caplog.records)

        emitted = collected()
        allowed = make_redis_relay(url=url, pattern="orders.*")
        allowed.start(emitted)
        assert allowed.wait_subscribed(10)
        redis_publisher.publish("orders.paid", "7")
        assert emitted.wait_for_count(1) == [("orders.paid", 7)]
    finally:
        redis_publisher.acl_deluser("relay-orders")
