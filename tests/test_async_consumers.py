"""Async consumers and producers, on memory and on a real Redis.

An ``async def`` consumer runs on the event loop rocketman owns, many at
once, with the retries, dead letters, hooks and ``event`` argument of a
plain one; ``emit_async`` and friends serve async producers; the inline
executor runs coroutines too, and says what it cannot do.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rocketman_relay_redis.testing import RedisServer

import rocketman_core as rocketman
from rocketman_core import Consumer, Producer, Rocketman, hookimpl
from rocketman_core.testing._deadlines import wait_until


def _memory(**settings: Any) -> Rocketman:
    app = Rocketman()
    app.configure(storage="memory", latency=0.1, retry_backoff=0, **settings)
    return app


@pytest.fixture
def app() -> Iterator[Rocketman]:
    runtime = _memory()
    yield runtime
    runtime.shutdown(timeout=5)


def _redis(server: RedisServer, namespace: str, **settings: Any) -> Rocketman:
    app = Rocketman()
    app.configure(storage=f"{server.url}?namespace={namespace}", latency=0.2, retry_backoff=0,
                  **settings)
    return app


# -- what runs, and with what ------------------------------------------------------


def test_async_functions_and_methods_run_beside_sync_consumers_on_one_event(app: Rocketman) -> None:
    seen: list[tuple[str, Any, str]] = []
    lock = threading.Lock()

    def record(who: str, payload: Any, event: rocketman.Event) -> None:
        with lock:
            seen.append((who, payload, event.name))

    @app.on_event("order.placed")
    async def receipt(payload: Any, event: rocketman.Event) -> None:
        await asyncio.sleep(0.01)
        record("async function", payload, event)

    @app.on_event("order.placed")
    def ledger(payload: Any, event: rocketman.Event) -> None:
        record("sync function", payload, event)

    with rocketman.using(app):
        class Shipping(Consumer):
            @rocketman.on_event("order.placed")
            async def ship(self, payload: Any, event: rocketman.Event) -> None:
                await asyncio.sleep(0)
                record("async method", payload, event)

    app.emit("order.placed", {"id": 7})
    assert app.drain(timeout=10)
    assert sorted(seen) == [(who, {"id": 7}, "order.placed")
                            for who in ("async function", "async method", "sync function")]


def test_async_consumers_await_together_up_to_the_default_bound_of_100(app: Rocketman) -> None:
    assert app.settings.async_concurrency == 100
    running = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    @app.on_event("io")
    async def wait_for_io(payload: Any) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        while not release.is_set():
            await asyncio.sleep(0.005)
        with lock:
            running -= 1

    app.emit_many([("io", n) for n in range(250)])
    wait_until(lambda: most >= 100, 10, lambda: f"only {most} in flight at once")
    time.sleep(0.2)  # not a synchronisation: room for a 101st, which must not come
    assert most == 100
    release.set()
    assert app.drain(timeout=10)
    assert running == 0


def test_async_concurrency_bounds_what_is_in_flight_and_comes_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMAN_ASYNC_CONCURRENCY", "7")
    app = _memory()
    assert app.settings.async_concurrency == 7
    in_flight: list[int] = []
    running = 0

    @app.on_event("io")
    async def slow(payload: Any) -> None:
        nonlocal running
        running += 1  # on the one loop thread: no lock needed
        in_flight.append(running)
        await asyncio.sleep(0.02)
        running -= 1

    app.emit_many([("io", n) for n in range(60)])
    assert app.drain(timeout=10)
    app.shutdown()
    assert max(in_flight) == 7
    monkeypatch.setenv("ROCKETMAN_ASYNC_CONCURRENCY", "0")
    with pytest.raises(rocketman.ConfigurationError, match="ROCKETMAN_ASYNC_CONCURRENCY='0'"):
        Rocketman().configure()


# -- failures ------------------------------------------------------------------------


def test_a_failing_async_consumer_is_retried_alone_then_dead_lettered_with_its_traceback(
        app: Rocketman) -> None:
    attempts: list[int] = []
    siblings: list[str] = []
    app.configure(storage="memory", latency=0.1, retry_backoff=0, max_retries=2)

    @app.on_event("charge", name="billing.charge")
    async def charge(payload: Any, event: rocketman.Event) -> None:
        attempts.append(event.attempt)
        await asyncio.sleep(0)
        raise SystemExit("card declined")  # anything a consumer raises is its own failure

    @app.on_event("charge", name="billing.notify")
    async def notify(payload: Any, event: rocketman.Event) -> None:
        siblings.append(event.id)

    app.emit("charge", {"amount": 5})
    assert app.drain(timeout=10)
    assert attempts == [0, 1, 2]
    assert len(siblings) == 1  # the sibling that succeeded ran once
    [letter] = app.dead_letters()
    assert letter.consumer == "billing.charge"
    assert "SystemExit: card declined" in letter.reason
    assert "in charge" in letter.error  # the traceback goes with the dead letter


def test_the_hooks_see_async_consumers_handle_and_fail(app: Rocketman) -> None:
    calls: list[tuple[str, str]] = []

    class Watch:
        @hookimpl
        def rocketman_event_handled(self, event: rocketman.Event, consumer: str, duration: float) -> None:
            assert duration >= 0.01
            calls.append(("handled", consumer))

        @hookimpl
        def rocketman_event_failed(self, event: rocketman.Event, consumer: str,
                                   error: BaseException, will_retry: bool) -> None:
            calls.append(("failed", consumer))

    app.register_plugin(Watch())
    app.configure(storage="memory", latency=0.1, retry_backoff=0, max_retries=0)

    @app.on_event("x", name="good")
    async def good(payload: Any) -> None:
        await asyncio.sleep(0.01)

    @app.on_event("x", name="bad")
    async def bad(payload: Any) -> None:
        await asyncio.sleep(0.01)
        raise ValueError("no")

    app.emit("x")
    assert app.drain(timeout=10)
    assert sorted(calls) == [("failed", "bad"), ("handled", "good")]


def test_a_plain_consumer_returning_a_coroutine_fails_rather_than_counting_as_run(
        app: Rocketman, recwarn: pytest.WarningsRecorder) -> None:
    app.configure(storage="memory", latency=0.1, retry_backoff=0, max_retries=0)

    async def real(payload: Any) -> None:
        raise AssertionError("never awaited, never run")

    @app.on_event("x", name="wrapped")
    def wrapper(payload: Any) -> Any:  # a decorator that lost the async def
        return real(payload)

    app.emit("x")
    assert app.drain(timeout=10)
    [letter] = app.dead_letters()
    assert "returned an awaitable (coroutine) without being an async def" in letter.reason
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


# -- the loop ------------------------------------------------------------------------


def test_a_consumer_blocking_the_loop_is_named_in_one_warning(
        app: Rocketman, caplog: pytest.LogCaptureFixture) -> None:
    @app.on_event("x", name="reports.render")
    async def render(payload: Any) -> None:
        time.sleep(0.3)  # a sync call in async code

    @app.on_event("x", name="reports.fine")
    async def fine(payload: Any) -> None:
        await asyncio.sleep(0.3)

    with caplog.at_level(logging.WARNING, logger="rocketman"):
        app.emit_many([("x", n) for n in range(3)])
        assert app.drain(timeout=10)
    blocked = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(blocked) == 1, blocked
    assert blocked[0].startswith("async consumer reports.render has blocked the event loop for")
    assert "asyncio.to_thread" in blocked[0]


def test_every_async_consumer_runs_on_one_running_loop_and_what_it_leaves_there_goes_on(
        app: Rocketman) -> None:
    """Whichever worker takes the event, a coroutine runs on the process's one loop, which is
    running: a lock made at the first event serves the later ones, and a task or a timer a
    consumer leaves behind goes on after it returns, with nothing more emitted."""
    app.configure(storage="memory", latency=0.1, worker_count=5, batch_size=8)
    loops: set[int] = set()
    running: list[bool] = []
    made: dict[str, asyncio.Lock] = {}
    in_lock: list[int] = []
    left_behind: list[int] = []
    timers: list[int] = []
    everything = threading.Event()

    async def later(n: int) -> None:
        await asyncio.sleep(0.05)
        left_behind.append(n)
        if len(left_behind) == 10 and len(timers) == 10:
            everything.set()

    def timer(n: int) -> None:
        timers.append(n)
        if len(left_behind) == 10 and len(timers) == 10:
            everything.set()

    tasks: set[asyncio.Task[None]] = set()

    @app.on_event("x")
    async def uses_the_loop(payload: int) -> None:
        loop = asyncio.get_running_loop()
        loops.add(id(loop))
        running.append(loop.is_running())
        lock = made.setdefault("lock", asyncio.Lock())  # bound to the loop of its first use
        async with lock:
            if payload % 7 == 0:
                await asyncio.sleep(0)
            in_lock.append(payload)
        if payload % 20 == 0:
            task = asyncio.create_task(later(payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            loop.call_later(0.05, timer, payload)

    app.emit_many([("x", n) for n in range(200)])
    assert app.drain(timeout=10)
    assert sorted(in_lock) == list(range(200))
    assert len(loops) == 1 and all(running)
    assert app.dead_letters() == []
    assert everything.wait(10), (left_behind, timers)
    assert sorted(left_behind) == sorted(timers) == list(range(0, 200, 20))


def test_the_executor_chooses_the_loop(app: Rocketman) -> None:
    app.configure(storage="memory", latency=0.1, executor_options={"loop": "uvloop"})
    loops: list[str] = []

    @app.on_event("x")
    async def which(payload: Any) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    app.emit("x")
    assert app.drain(timeout=10)
    assert loops[0].startswith("uvloop")
    with pytest.raises(rocketman.ConfigurationError, match="loop='trio'"):
        app.configure(executor_options={"loop": "trio"})


# -- shutdown ------------------------------------------------------------------------


def test_shutdown_on_memory_waits_for_coroutines_then_cancels_and_counts_them(
        caplog: pytest.LogCaptureFixture) -> None:
    app = _memory()
    finished: list[int] = []
    cancelled: list[int] = []

    @app.on_event("quick")
    async def quick(payload: int) -> None:
        await asyncio.sleep(0.05)
        finished.append(payload)

    @app.on_event("stuck")
    async def stuck(payload: int) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(payload)
            raise

    app.emit_many([("quick", 1), ("stuck", 2), ("stuck", 3)])
    wait_until(lambda: app.stats()["reserved"] == 2 and finished, 10, "the consumers did not start")
    with caplog.at_level(logging.INFO, logger="rocketman"):
        started = time.monotonic()
        assert app.shutdown(timeout=0.5) is False
        took = time.monotonic() - started
    assert took < 3, took
    assert finished == [1]
    assert sorted(cancelled) == [2, 3]
    text = caplog.text
    assert "shutdown cancelled 2 async consumers still running after 0.5s" in text
    assert "rocketman stopped with 2 events not handled, now lost: queued 2" in text
    assert app.dead_letters() == []  # cancelled by shutdown is no failure


def test_shutdown_on_redis_gives_cancelled_coroutines_back_for_the_next_worker(
        rocketman_redis_server: RedisServer) -> None:
    namespace = f"async-{uuid.uuid4().hex[:8]}"
    first = _redis(rocketman_redis_server, namespace)
    started = threading.Event()

    @first.on_event("slow", name="slow.consumer")
    async def stuck(payload: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    first.emit("slow", {"n": 1})
    assert started.wait(10)
    assert first.shutdown(timeout=0.3) is False
    # Given back at once, not after the lease: the next process takes it now.
    second = _redis(rocketman_redis_server, namespace)
    again: list[Any] = []

    @second.on_event("slow", name="slow.consumer")
    async def quick(payload: Any, event: rocketman.Event) -> None:
        again.append((payload, event.attempt))

    try:
        second.start()
        wait_until(lambda: again, 5, "the cancelled event never came back")
        assert again == [({"n": 1}, 0)]  # not a failure: the attempt count did not grow
        assert second.drain(timeout=5)
        assert second.dead_letters() == []
    finally:
        second.shutdown()


def test_a_lease_is_renewed_while_its_async_consumer_awaits(rocketman_redis_server: RedisServer) -> None:
    namespace = f"async-{uuid.uuid4().hex[:8]}"
    apps = [_redis(rocketman_redis_server, namespace, storage_options={"lease": 0.6})
            for _ in range(2)]
    runs: list[str] = []
    for app in apps:
        @app.on_event("long", name="long.consumer")
        async def long(payload: Any, event: rocketman.Event) -> None:
            runs.append(event.id)
            await asyncio.sleep(2.0)  # more than three leases

    try:
        for app in apps:
            app.start()
        event_id = apps[0].emit("long")
        wait_until(lambda: runs, 5, "the consumer never ran")
        assert apps[0].drain(timeout=10)
        assert runs == [event_id]  # nobody took it over while it awaited
    finally:
        for app in apps:
            app.shutdown()


# -- producers -----------------------------------------------------------------------


def test_emit_async_emit_many_async_and_drain_async_on_memory(app: Rocketman) -> None:
    seen: list[Any] = []

    @app.on_event("a.*")
    async def record(payload: Any) -> None:
        seen.append(payload)

    class Shop(Producer):
        pass

    async def main() -> list[str]:
        with rocketman.using(app):
            first = await rocketman.emit_async("a.one", 1)
            more = await app.emit_many_async([("a.two", 2), ("a.three", 3)])
            last = await Shop().emit_async("a.four", 4)
            await Shop().emit_many_async([("a.five", 5)])
            assert await Shop().drain_async(timeout=10)
            assert await rocketman.drain_async(timeout=10)
        return [first, *more, last]

    ids = asyncio.run(main())
    assert sorted(seen) == [1, 2, 3, 4, 5]
    assert len(set(ids)) == 4
    with pytest.raises(TypeError, match="JSON"):
        asyncio.run(app.emit_async("a.bad", {1, 2}))
    with pytest.raises(ValueError, match="invalid event name"):
        asyncio.run(app.emit_many_async([("a.ok", 1), ("has space", 2)]))


def test_sync_emit_keeps_working_inside_a_running_loop(app: Rocketman) -> None:
    seen: list[Any] = []

    @app.on_event("x")
    async def record(payload: Any) -> None:
        seen.append(payload)

    async def endpoint() -> None:
        app.emit("x", 1)  # a sync library called from async code

    asyncio.run(endpoint())
    assert app.drain(timeout=10)
    assert seen == [1]


def test_emit_async_on_redis_and_a_worker_process_with_async_consumers(
        rocketman_redis_server: RedisServer, tmp_path: Any, rocketman_console_script: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    namespace = f"async-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "handled.txt"
    (tmp_path / "async_app.py").write_text(
        "import asyncio, os\n"
        "import rocketman_core as rocketman\n"
        "_OUT = os.open(os.environ['OUT'], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
        "@rocketman.on_event('job.*', name='jobs.run')\n"
        "async def run(payload, event):\n"
        "    await asyncio.sleep(0.05)\n"
        "    os.write(_OUT, f'{event.id}\\n'.encode())\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROCKETMAN_")}
    env["OUT"] = str(out)
    url = f"{rocketman_redis_server.url}?namespace={namespace}"
    worker = subprocess.Popen(
        [rocketman_console_script, "worker", "async_app", "--storage", url, "--latency", "0.5"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    producer = Rocketman()
    producer.configure(storage=url, worker_count=0)
    try:
        wait_until(lambda: any(s.name == "jobs.run" and s.hosts for s in producer.subscriptions()),
                   20, "the worker never registered its subscription")

        async def emit_all() -> list[str]:
            ids = await asyncio.gather(*(producer.emit_async(f"job.{n % 3}", n) for n in range(200)))
            ids += await producer.emit_many_async([("job.bulk", n) for n in range(100)])
            return list(ids)

        ids = asyncio.run(emit_all())
        wait_until(lambda: out.exists() and len(out.read_text().split()) >= 300, 30,
                   lambda: f"{len(out.read_text().split()) if out.exists() else 0} of 300 handled")
        assert sorted(out.read_text().split()) == sorted(ids)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=20)
        producer.shutdown()
    assert worker.returncode == 0, output
    assert "Traceback" not in output, output
    del sys


# -- inline --------------------------------------------------------------------------


def test_inline_runs_async_consumers_before_emit_returns_and_refuses_a_running_loop() -> None:
    app = Rocketman()
    app.configure(storage="memory", executor="inline")
    seen: list[str] = []

    @app.on_event("x")
    async def first(payload: Any) -> None:
        await asyncio.sleep(0)
        seen.append(f"async {payload}")

    @app.on_event("x")
    def second(payload: Any) -> None:
        seen.append(f"sync {payload}")

    app.emit("x", 1)  # no loop runs here: run to completion
    assert seen == ["async 1", "sync 1"]

    async def in_a_loop() -> None:
        with pytest.raises(RuntimeError, match=r"use `await rocketman.emit_async\(...\)`"):
            app.emit("x", 2)
        assert seen == ["async 1", "sync 1"]  # neither ran: no half-dispatched event
        await app.emit_async("x", 3)
        assert seen[-2:] == ["async 3", "sync 3"]

    asyncio.run(in_a_loop())

    @app.on_event("boom")
    async def fails(payload: Any) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        app.emit("boom")
    with pytest.raises(KeyError):
        asyncio.run(app.emit_async("boom"))
    app.shutdown()


def test_an_async_consumer_emits_the_next_event_with_emit_async_on_redis(
        rocketman_redis_server: RedisServer) -> None:
    """A chain: the follow-up is emitted from rocketman's own loop, on that loop's Redis client."""
    app = _redis(rocketman_redis_server, f"async-{uuid.uuid4().hex[:8]}")
    shipped: list[Any] = []

    @app.on_event("order.paid", name="shop.ship")
    async def ship(payload: Any) -> None:
        await app.emit_async("order.shipped", {"id": payload["id"]})

    @app.on_event("order.shipped", name="shop.notify")
    async def notify(payload: Any) -> None:
        shipped.append(payload["id"])

    try:
        app.emit_many([("order.paid", {"id": n}) for n in range(50)])
        wait_until(lambda: len(shipped) == 50, 20, lambda: f"{len(shipped)} of 50 shipped")
        assert sorted(shipped) == list(range(50))
        assert app.drain(timeout=10)
        assert app.dead_letters() == []
    finally:
        app.shutdown()


def test_consumers_sharing_a_driver_keep_their_own_context_task_and_timeout(app: Rocketman) -> None:
    """Trivial coroutines run their first step in a shared driver task; none sees another's
    ContextVar, current_task() stays the same across a consumer's awaits, and a timeout cancels
    only the consumer that entered it."""
    import contextvars

    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=-1)
    leaks: list[int] = []
    stable: list[bool] = []
    timed_out: list[int] = []
    app.configure(storage="memory", latency=0.1, retry_backoff=0, max_retries=0)

    @app.on_event("ctx")
    async def sets(payload: int) -> None:
        leaks.append(var.get())  # must never see another consumer's value
        var.set(payload)
        if payload % 2:
            task = asyncio.current_task()
            await asyncio.sleep(0.01)
            stable.append(asyncio.current_task() is task and var.get() == payload)
            if payload % 3 == 0:
                try:
                    async with asyncio.timeout(0.01):
                        await asyncio.sleep(1)
                except TimeoutError:
                    timed_out.append(payload)

    app.emit_many([("ctx", n) for n in range(60)])
    assert app.drain(timeout=10)
    assert leaks == [-1] * 60
    assert stable == [True] * 30
    assert sorted(timed_out) == [n for n in range(60) if n % 2 and n % 3 == 0]
    assert app.dead_letters() == []
