"""push_async and push_many_async on a real redis-server: routed as push is, the event loop never blocked.

Each test runs its coroutines with ``asyncio.run`` (a loop of its own, shut
down and closed at the end, as an application's would be).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from rocketman_redis import RedisStorage, StorageUnavailable
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Subscription

EVENT = "async.event"


def _subscribed(storage: RedisStorage) -> RedisStorage:
    """``storage`` with the subscription ``s`` on ``async.*``."""
    storage.subscribe([Subscription("s", ("async.*",))], "async-test")
    return storage


def _reserve(storage: RedisStorage, count: int, timeout: float = 10.0) -> list[bytes]:
    """Reserve and acknowledge ``count`` messages of ``s`` with the sync API, in order."""
    taken: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(taken) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(taken)} of {count} messages reached the subscription"
        batch = storage.reserve(["s"], min(remaining, 1.0), 1000)
        taken += [delivery.message for delivery in batch]
        storage.ack(batch)
    assert len(taken) == count, f"{len(taken)} messages reached the subscription, {count} were pushed"
    return taken


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, that the test freezes or stops."""
    with RedisServer(appendonly=False) as server:
        yield server


def test_push_async_and_push_many_async_route_exactly_like_push(
    redis_storage: RedisStorage,
) -> None:
    """Sync and async pushes interleaved, 2,500 in one push_many_async: one subscription sees them all, in order."""
    storage = _subscribed(redis_storage)
    many = [(EVENT, b"many %d \x00\xff" % n) for n in range(2500)]  # three LPUSH batches

    async def push() -> None:
        await storage.push_async(EVENT, b"async one")
        await storage.push_async("unsubscribed.event", b"parked")
        await storage.push_many_async([])
        await storage.push_many_async(many)
        await storage.push_many_async([(EVENT, b"a small batch"), ("unsubscribed.event", b"parked")])

    storage.push(EVENT, b"sync before")
    asyncio.run(push())
    storage.push(EVENT, b"sync after")
    expected = [b"sync before", b"async one", *(m for _, m in many), b"a small batch", b"sync after"]
    assert _reserve(storage, len(expected)) == expected
    assert storage.stats() == {"queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 2,
                               "dropped": 0}


def test_a_hundred_and_fifty_concurrent_tasks_of_one_loop_all_push(
    redis_storage: RedisStorage,
) -> None:
    """More tasks at once than redis.asyncio's default pool allows (100): none is refused."""
    storage = _subscribed(redis_storage)

    async def producer(number: int) -> None:
        for n in range(20):
            await storage.push_async(EVENT, f"{number}-{n}".encode())

    async def push() -> None:
        await asyncio.gather(*(producer(number) for number in range(150)))

    asyncio.run(push())
    received = _reserve(storage, 150 * 20)
    assert sorted(received) == sorted(f"{p}-{n}".encode() for p in range(150) for n in range(20))
    for number in (0, 149):  # each task's own pushes stay in its order
        mine = [m for m in received if m.startswith(f"{number}-".encode())]
        assert mine == [f"{number}-{n}".encode() for n in range(20)]


def test_the_loop_keeps_running_while_a_push_waits_on_a_frozen_server(
    own_server: RedisServer, redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """SIGSTOP the server: a ticker task keeps ticking while push_async waits; after SIGCONT it completes."""
    storage = _subscribed(redis_storage_factory(url=own_server.url, socket_timeout=10))
    ticks: list[float] = []

    async def scenario() -> None:
        await storage.push_async(EVENT, b"before")  # a connection of this loop, open
        ticked = asyncio.Event()

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                if len(ticks) >= 30:
                    ticked.set()
                await asyncio.sleep(0.01)

        own_server.freeze()
        try:
            ticking = asyncio.create_task(ticker())
            push = asyncio.create_task(storage.push_async(EVENT, b"while frozen"))
            await asyncio.wait_for(ticked.wait(), 5)
            assert not push.done(), "push_async returned while the server was frozen"
        finally:
            own_server.thaw()
        await asyncio.wait_for(push, 10)
        ticking.cancel()

    asyncio.run(scenario())
    longest = max(later - earlier for earlier, later in itertools.pairwise(ticks))
    assert longest < 0.5, f"the loop stalled {longest:.2f}s while a push waited on Redis"
    assert _reserve(storage, 2) == [b"before", b"while frozen"]


def test_a_frozen_server_fails_push_async_within_bounded_time(
    own_server: RedisServer, redis_storage_factory: Callable[..., RedisStorage],
) -> None:
    """A server that never answers: StorageUnavailable within about 2 * (connect_timeout + socket_timeout).

    For one push, a small batch (one LPUSH) and a batch pipelined in several
    commands alike, each on a connection that was connected before the freeze.
    """
    storage = redis_storage_factory(url=own_server.url, connect_timeout=0.5, socket_timeout=0.5)
    pushes = {
        "push_async": lambda: storage.push_async(EVENT, b"lost"),
        "push_many_async of 10": lambda: storage.push_many_async([(EVENT, b"lost")] * 10),
        "push_many_async of 2,500": lambda: storage.push_many_async([(EVENT, b"lost")] * 2500),
    }

    async def scenario() -> dict[str, float]:
        took = {}
        for what, push in pushes.items():
            await storage.push_many_async([(EVENT, b"before")] * 2500)  # connections open before the freeze
            own_server.freeze()
            started = time.monotonic()
            try:
                with pytest.raises(StorageUnavailable, match="could not store"):
                    await asyncio.wait_for(push(), 10)
            finally:
                own_server.thaw()
            took[what] = time.monotonic() - started
        return took

    slow = {what: seconds for what, seconds in asyncio.run(scenario()).items() if seconds >= 2 * (0.5 + 0.5) + 1.0}
    assert not slow, f"on a frozen server these failed only after: {slow}"


def test_a_stopped_server_fails_push_async_at_once_naming_the_url_without_credentials(
    own_server: RedisServer,
) -> None:
    """Redis down: StorageUnavailable names the masked URL, for push_async and push_many_async alike."""
    url = f"redis://rocketman:s3cret-password@{own_server.host}:{own_server.port}/0"
    own_server.stop()
    storage = RedisStorage(url, connect_timeout=0.5, socket_timeout=0.5)
    errors: list[StorageUnavailable] = []

    async def scenario() -> None:
        for push in (storage.push_async(EVENT, b"lost"),
                     storage.push_many_async([(EVENT, b"lost")] * 1500)):
            with pytest.raises(StorageUnavailable) as raised:
                await asyncio.wait_for(push, 10)
            errors.append(raised.value)

    try:
        started = time.monotonic()
        asyncio.run(scenario())
        took = time.monotonic() - started
    finally:
        storage.close()
    assert took < 2 * (0.5 + 0.5) + 1.0, f"push_async on a stopped server failed only after {took:.1f}s"
    for error in errors:
        message = str(error)
        assert storage.url in message and "unreachable" in message, message
        assert "s3cret-password" not in message, message


def test_push_async_from_loops_in_turn_and_from_threads_at_once(
    redis_storage: RedisStorage,
) -> None:
    """Two asyncio.run in turn, then two threads each running its own loop at the same time."""
    storage = _subscribed(redis_storage)

    async def push(prefix: str, count: int, started: threading.Barrier | None = None) -> None:
        if started is not None:
            started.wait(5)  # both loops push at the same time
        await asyncio.gather(*(storage.push_async(EVENT, f"{prefix} {n}".encode())
                               for n in range(count)))

    asyncio.run(push("first loop", 1))
    asyncio.run(push("second loop", 1))
    assert _reserve(storage, 2) == [b"first loop 0", b"second loop 0"]

    started = threading.Barrier(2)
    errors: list[BaseException] = []

    def in_thread(prefix: str) -> None:
        try:
            asyncio.run(push(prefix, 200, started))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=in_thread, args=(f"thread {n}",), daemon=True,
                                name=f"rocketman-async-push-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, f"a thread's loop failed to push: {errors[0]!r}"
    assert sorted(_reserve(storage, 400)) == sorted(
        f"thread {t} {n}".encode() for t in range(2) for n in range(200))


def _named_connections(raw: redis.Redis, name: str) -> int:
    return sum(1 for client in raw.client_list() if client.get("name") == name)


def test_close_closes_the_connections_of_a_running_loop_and_warns_about_nothing(
    rocketman_redis_server: RedisServer, redis_raw: redis.Redis,
    redis_wait_for: Callable[..., None], redis_delete_namespace: Callable[..., None],
) -> None:
    """Loops finished, one running in another thread, one closed without shutting down: close() copes."""
    name = f"rocketman-async-{os.getpid()}-{time.monotonic_ns()}"
    storage = RedisStorage(f"{rocketman_redis_server.url}?client_name={name}&namespace={name}")
    running = asyncio.new_event_loop()
    runner = threading.Thread(target=running.run_forever, daemon=True, name="rocketman-async-loop")
    abandoned = asyncio.new_event_loop()
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(storage.push_async(EVENT, b"finished loop"))
            runner.start()
            asyncio.run_coroutine_threadsafe(storage.push_async(EVENT, b"running loop"),
                                             running).result(10)
            assert _named_connections(redis_raw, name) >= 1
            storage.close()
            redis_wait_for(lambda: _named_connections(redis_raw, name) == 0, 5,
                           lambda: f"{_named_connections(redis_raw, name)} connections still open")
            storage.close()  # idempotent
            gc.collect()
        assert [str(w.message) for w in caught] == []
        assert unraisable == []

        # A loop closed without shutting its async generators down: close() drops its
        # client (Python then warns about the sockets that loop left open, as it should).
        again = RedisStorage(f"{rocketman_redis_server.url}?namespace={name}")
        abandoned.run_until_complete(again.push_async(EVENT, b"abandoned loop"))
        abandoned.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            again.close()
            gc.collect()
        assert unraisable == []
    finally:
        sys.unraisablehook = previous_hook
        running.call_soon_threadsafe(running.stop)
        runner.join(5)
        running.close()
        redis_delete_namespace(redis_raw, storage.keys)


def test_a_forked_child_pushes_on_connections_of_its_own_and_leaves_the_parents_alone(
    redis_storage: RedisStorage,
) -> None:
    """The child pushes, collects and closes; the parent's open loop then pushes on its own connection as before."""
    storage = _subscribed(redis_storage)
    loop = asyncio.new_event_loop()  # stays open across the fork, its connection too
    try:
        loop.run_until_complete(storage.push_async(EVENT, b"parent before"))
        pid = os.fork()
        if pid == 0:  # the child: report by exit status, never return into pytest
            status = 3
            try:
                # Forgotten at the fork: even the parent's loop would get a new client.
                assert storage._async is not None
                status = 2 if storage._async._clients else 1

                async def child() -> None:
                    await storage.push_async(EVENT, b"child")
                    gc.collect()  # what the parent's loop holds must not be collected here

                if status == 1:
                    asyncio.run(child())
                    storage.close()
                    status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) != 2, "the child kept the parent's async clients"
        assert os.waitstatus_to_exitcode(status) == 0, "the child could not push"
        started = time.monotonic()
        loop.run_until_complete(asyncio.wait_for(storage.push_async(EVENT, b"parent after"), 10))
        took = time.monotonic() - started
        assert took < 1.0, f"the parent's push took {took:.1f}s after the child's: its connection was disturbed"
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert _reserve(storage, 3) == [b"parent before", b"child", b"parent after"]
