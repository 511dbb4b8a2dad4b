"""The Redis storage against raw redis-py, a bare connection, a hand-written consumer, and peers.

The peers: dramatiq, rq, Celery, taskiq, arq and huey, each with its own producer API and worker.

Everything talks to a redis-server of the benchmark's own on a free port
(no append-only file, like a cache-configured Redis), never to the machine's.
Worker processes report through :mod:`bench._tally`.

The Redis storage keeps a queue per *subscription* and routes each event, at
emit, to the queues of the subscriptions that exist and match it; an event
nobody subscribes to is parked instead. So every figure here creates its
subscriptions before it emits: the emit figures register them through the
storage, the end-to-end figures by starting the worker processes once.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from ._measure import PAIRED_RUNS, WIDE_RUNS, Config, child_env, interleave, median, python, script
from ._report import Row, Target

if TYPE_CHECKING:
    from rocketman_core import Rocketman

__all__ = ["redis_section"]

EVENT = "bench.event"
RAW_QUEUE = "raw:queue"
RESULT_KEY = "bench:result"
BATCH = 100
WORKER_COUNTS = (1, 2, 5, 10)
#: The namespace of every figure but the fan-out emits.
NAMESPACE = "bench"
#: The subscription of ``bench._redis_consumer`` (its default name, ``module:qualname``).
CONSUMER = "bench._redis_consumer:handle"
#: The subscription the emit figures of one subscription push to.
SINGLE = "bench.queue"

#: The fan-out emit figures: a namespace of their own, with 10 subscriptions,
#: of which the first 3 match EVENT (exactly, by prefix, everything) and 7 do not.
FANOUT_NAMESPACE = "bench-fanout"
FANOUT_PATTERNS = (
    "bench.event", "bench.*", "*",
    "bench.other", "bench.event.retry", "bench", "billing.*", "*.created", "user.signed_up", "mail.*",
)
FANOUT_MATCHING = 3

#: The fan-out end-to-end figure.
#: label -> its subscription's name; each process imports bench._subscriber,
#: which names its consumer after BENCH_SUBSCRIPTION.
SUBSCRIBERS = {"a": "bench.sub_a", "b": "bench.sub_b", "c": "bench.sub_c"}
SUBSCRIBER_THREADS = 5


def _envelope(number: int) -> str:
    # What a hand-written producer would push: the name and the payload, as JSON.
    return json.dumps({"name": EVENT, "payload": {"n": number}})


def _rocketman_envelope(number: int) -> bytes:
    """The bytes rocketman pushes for ``emit(EVENT, {"n": number})``: id, name, time, attempt, payload.

    The same encoder ``emit_many`` uses, so the same format and size
    (``emit`` writes the same fields in the same order).
    """
    from rocketman_core._envelope import encode

    return encode(EVENT, {"n": number})


class Produced(NamedTuple):
    """One run of a producer: its rate, and the CPU it cost, per event."""

    #: Events per second, over the producer's loop.
    rate: float
    #: µs of redis-server CPU (user + system) per event, from INFO cpu.
    server_us: float
    #: µs of this process's CPU (user + system) per event.
    client_us: float
    #: Bytes of the newest message pushed.
    envelope: int = 0


class Drained(NamedTuple):
    """One worker process draining pre-filled events."""

    #: Events per second, from its first handler call to its last.
    rate: float
    #: µs of redis-server CPU (user + system) per event, from INFO cpu.
    server_us: float


class Fanout(NamedTuple):
    """One run of the fan-out end-to-end figure."""

    #: Each subscription's rate: N over its first to last handler call, in its own process.
    rates: dict[str, float]
    #: 3 N over the first handler call of any process to the last of any.
    overall: float


#: label -> (process, its log, its command)
_Processes = dict[str, tuple["subprocess.Popen[bytes]", IO[bytes], list[str]]]


class _Bench:
    """One redis-server, a client, and rocketman's storage URL on it (or why it is unusable)."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.storage = f"{url}?namespace={NAMESPACE}"
        self.client = redis.Redis.from_url(url)
        self.unavailable = self._probe()

    def _probe(self) -> str | None:
        """None if rocketman's Redis storage works here, else the reason it does not."""
        try:
            self.subscribe(NAMESPACE, [("bench.probe", EVENT)])
            app = self.app()
            app.emit(EVENT, {"n": -1})
            stats = app.stats()
            app.shutdown(timeout=1)
        except Exception as error:
            return f"{type(error).__name__}: {error}".splitlines()[0][:160]
        finally:
            self.client.flushdb()
        if stats["queued"] != 1 or stats["parked"] != 0:
            return f"the probe event was not routed to its subscription (stats say {stats})"
        return None

    def app(self, namespace: str = NAMESPACE) -> Rocketman:
        """A producer-only rocketman runtime on the Redis storage."""
        import rocketman_core

        app = rocketman_core.Rocketman()
        app.configure(storage=f"{self.url}?namespace={namespace}", worker_count=0)
        return app

    def subscribe(self, namespace: str, subscriptions: Sequence[tuple[str, str]]) -> None:
        """Create ``(name, pattern)`` subscriptions, as a worker hosting them would at its start."""
        from rocketman_redis import RedisStorage

        from rocketman_core import Subscription

        storage = RedisStorage(self.url, namespace=namespace)
        try:
            storage.subscribe([Subscription(name, (pattern,)) for name, pattern in subscriptions], "bench")
        finally:
            storage.close()

    def _queue(self, namespace: str, subscription: str) -> str:
        from rocketman_redis import KeyLayout

        return KeyLayout(namespace).subscription(subscription).queue

    def _subscription_names(self) -> set[str]:
        from rocketman_redis import KeyLayout

        names = self.client.hkeys(KeyLayout(NAMESPACE).subscriptions)
        return {name.decode() if isinstance(name, bytes) else name for name in names}

    def server_cpu(self) -> float:
        """Seconds of CPU redis-server used so far (user + system, microsecond resolution)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def _produce(self, loop: Callable[[], None], events: int,
                 then: Callable[[], object] | None = None) -> Produced:
        """Run a producer's loop and measure it; the INFO calls are outside the clock.

        ``then`` runs after the clock stopped but before the server's CPU is
        read: rocketman routes what the loop pushed there (its routers would,
        in the worker processes), so the server CPU per event includes the
        routing, while the rate is what the producer pays.
        """
        server = self.server_cpu()
        cpu = time.process_time()
        started = time.perf_counter()
        loop()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if then is not None:
            then()
        server = self.server_cpu() - server
        return Produced(events / elapsed, server / events * 1e6, cpu / events * 1e6)

    # -- producing, one subscription ------------------------------------------

    def emit_rate(self, total: int) -> float:
        self.subscribe(NAMESPACE, [(SINGLE, EVENT)])
        app = self.app()
        emit = app.emit
        emit(EVENT, {"n": -1})  # connects before timing
        started = time.perf_counter()
        for number in range(total):
            emit(EVENT, {"n": number})
        elapsed = time.perf_counter() - started
        app.shutdown(timeout=1)
        self.client.flushdb()
        return total / elapsed

    def emit_many_rate(self, total: int) -> float:
        self.subscribe(NAMESPACE, [(SINGLE, EVENT)])
        app = self.app()
        app.emit(EVENT, {"n": -1})
        started = time.perf_counter()
        for first in range(0, total, BATCH):
            app.emit_many([(EVENT, {"n": n}) for n in range(first, first + BATCH)])
        elapsed = time.perf_counter() - started
        app.shutdown(timeout=1)
        self.client.flushdb()
        return total / elapsed

    # -- producing, 10 subscriptions of which 3 match ---------------------------

    def _fanout_app(self) -> Rocketman:
        """A fresh namespace with its 10 subscriptions, and a producer connected to it."""
        self.client.flushdb()
        self.subscribe(FANOUT_NAMESPACE, [(f"fanout-{i}", p) for i, p in enumerate(FANOUT_PATTERNS)])
        app = self.app(FANOUT_NAMESPACE)
        app.emit(EVENT, {"n": -1})  # connects, reads the table of subscriptions, loads the script
        return app

    def _fanout_done(self, app: Rocketman, produced: Produced, emitted: int) -> Produced:
        """Check that every event went to the 3 matching subscriptions and no other; clean up."""
        try:
            stats = app.stats()
            lengths = [self.client.llen(self._queue(FANOUT_NAMESPACE, f"fanout-{i}"))
                       for i in range(len(FANOUT_PATTERNS))]
            expected = [emitted] * FANOUT_MATCHING + [0] * (len(FANOUT_PATTERNS) - FANOUT_MATCHING)
            if lengths != expected or stats["parked"]:
                raise RuntimeError(f"the events were not routed as expected: queues {lengths}, "
                                   f"stats {stats}")
            newest = self.client.lindex(self._queue(FANOUT_NAMESPACE, "fanout-0"), 0)
            return produced._replace(envelope=len(newest or b""))
        finally:
            app.shutdown(timeout=1)
            self.client.flushdb()

    def fanout_emit(self, total: int) -> Produced:
        """``emit`` one at a time, each routed to 3 of the 10 subscriptions."""
        app = self._fanout_app()
        emit = app.emit
        payloads = [{"n": n} for n in range(total)]

        def loop() -> None:
            for payload in payloads:
                emit(EVENT, payload)

        return self._fanout_done(app, self._produce(loop, total, app.stats), total + 1)

    def fanout_emit_many(self, total: int) -> Produced:
        """``emit_many`` of BATCH events at a time, each routed to 3 of the 10 subscriptions."""
        app = self._fanout_app()
        emit_many = app.emit_many
        batches = [[(EVENT, {"n": n}) for n in range(first, min(total, first + BATCH))]
                   for first in range(0, total, BATCH)]

        def loop() -> None:
            for batch in batches:
                emit_many(batch)

        return self._fanout_done(app, self._produce(loop, total, app.stats), total + 1)

    @contextlib.contextmanager
    def _bare_connection(self) -> Iterator[Any]:
        """A connection of redis-py's pool, used bare: no client layer (no pool round, retry, health check)."""
        self.client.flushdb()
        pool = self.client.connection_pool
        connection: Any = pool.get_connection()
        try:
            connection.send_packed_command(connection.pack_command("PING"), check_health=False)
            connection.read_response()
            yield connection
        finally:
            pool.release(connection)

    def _bare_done(self, produced: Produced, total: int, envelope: bytes) -> Produced:
        try:
            if self.client.llen(RAW_QUEUE) != total:
                raise RuntimeError(f"the bare LPUSH left {self.client.llen(RAW_QUEUE)} of {total} values")
            return produced._replace(envelope=len(envelope))
        finally:
            self.client.flushdb()

    def _bare(self, commands: list[list[bytes]], total: int) -> Produced:
        """LPUSH each list of values in one command, one round trip each, on a bare connection.

        redis-py's connection packs the command, sends it and parses the
        reply, nothing else. The values are encoded before the clock starts:
        the loop is the round trips alone.
        """
        with self._bare_connection() as connection:
            send, pack, read = (connection.send_packed_command, connection.pack_command,
                                connection.read_response)

            def loop() -> None:
                for values in commands:
                    send(pack("LPUSH", RAW_QUEUE, *values), check_health=False)
                    read()

            produced = self._produce(loop, total)
        return self._bare_done(produced, total, commands[-1][-1])

    def bare_lpush(self, total: int) -> Produced:
        """One LPUSH of one rocketman envelope per round trip."""
        return self._bare([[_rocketman_envelope(n)] for n in range(total)], total)

    def bare_lpush_many(self, total: int) -> Produced:
        """One LPUSH of BATCH rocketman envelopes per round trip."""
        return self._bare([[_rocketman_envelope(n) for n in range(first, min(total, first + BATCH))]
                           for first in range(0, total, BATCH)], total)

    def bare_lpush_encoding(self, total: int) -> Produced:
        """One LPUSH per round trip of one envelope made with ``json.dumps`` in the loop."""
        return self.bare_lpush_many_encoding(total, batch=1)

    def bare_lpush_many_encoding(self, total: int, batch: int = BATCH) -> Produced:
        """One LPUSH of ``batch`` envelopes per round trip, each made with ``json.dumps`` in the loop.

        What a hand-written producer does, the same work as ``emit``: the
        same fields, the same sizes (an id of a random prefix and a counter,
        the time to the millisecond), from the same prebuilt payloads the
        fan-out emits get, encoded with the standard library's C encoder.
        The targets are judged against this baseline.
        """
        batches = [[{"n": n} for n in range(first, min(total, first + batch))]
                   for first in range(0, total, batch)]
        prefix = os.urandom(8).hex() + "-"
        dumps, now = json.JSONEncoder(separators=(",", ":")).encode, time.time
        counter = iter(range(1, total + 1))
        last: list[bytes] = []
        with self._bare_connection() as connection:
            send, pack, read = (connection.send_packed_command, connection.pack_command,
                                connection.read_response)

            def loop() -> None:
                for batch in batches:
                    values = [dumps({"id": f"{prefix}{next(counter):x}", "name": EVENT,
                                     "emitted_at": round(now(), 3), "attempt": 0,
                                     "payload": payload}).encode() for payload in batch]
                    send(pack("LPUSH", RAW_QUEUE, *values), check_health=False)
                    read()
                last[:] = values[-1:]

            produced = self._produce(loop, total)
        return self._bare_done(produced, total, last[0])

    # -- end to end: worker processes drain filled queues -----------------------

    @contextlib.contextmanager
    def _processes(self, commands: Mapping[str, list[str]], total: int,
                   keys: Mapping[str, str], env: Mapping[str, str] | None = None) -> Iterator[_Processes]:
        """Start one process per command, each reporting under its key; stop them all at the end."""
        with contextlib.ExitStack() as stack:
            processes: _Processes = {}
            try:
                for label, argv in commands.items():
                    log = stack.enter_context(tempfile.TemporaryFile())
                    environment = child_env(BENCH_TOTAL=str(total), BENCH_REDIS_URL=self.url,
                                            BENCH_RESULT_KEY=keys[label],
                                            BENCH_SUBSCRIPTION=SUBSCRIBERS.get(label, ""), **(env or {}))
                    process = subprocess.Popen(argv, env=environment, stdout=log, stderr=log, start_new_session=True)
                    processes[label] = (process, log, argv)
                yield processes
            finally:
                _stop_all([process for process, _, _ in processes.values()])

    @staticmethod
    def _wait(processes: _Processes, pending: Callable[[], set[str]], doing: str, timeout: float) -> None:
        """Poll until ``pending()`` is empty; fail when a pending process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while waiting := pending():
            for label in waiting:
                process, log, argv = processes[label]
                if process.poll() is not None and label in pending():
                    log.seek(0)
                    tail = log.read()[-1500:].decode(errors="replace")
                    raise RuntimeError(f"{' '.join(argv[:3])} exited with {process.returncode} "
                                       f"before it could {doing}:\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(sorted(waiting))}: did not {doing} in {timeout:.0f}s")
            time.sleep(0.02)

    def _register(self, commands: Mapping[str, list[str]], total: int, names: Sequence[str],
                  env: Mapping[str, str] | None = None) -> None:
        """Start the worker processes once, until the storage lists their subscriptions, then stop them."""
        keys = {label: f"{RESULT_KEY}:register:{label}" for label in commands}
        with self._processes(commands, total, keys, env) as processes:
            self._wait(processes, lambda: set() if set(names) <= self._subscription_names() else set(commands),
                       "register its subscription", 60)

    def _drain(self, commands: Mapping[str, list[str]], total: int, fill: Callable[[], None],
               register: Sequence[str] = (), done: Callable[[], object] | None = None,
               env: Mapping[str, str] | None = None,
               reports: dict[str, Any] | None = None) -> dict[str, tuple[float, float]]:
        """Fill the queues, start the worker processes, and return each one's first and last handler call.

        ``register``: the subscriptions to create first, by starting the
        processes once (rocketman routes an event only to the subscriptions
        that exist when it is emitted). Each process's start-up is not timed:
        its window runs from its first handler call to its last.
        """
        self.client.flushdb()
        if register:
            self._register(commands, total, register, env)
        fill()
        keys = {label: f"{RESULT_KEY}:{label}" for label in commands}
        results: dict[str, Any] = {}

        def pending() -> set[str]:
            for label, key in keys.items():
                if label not in results and (raw := self.client.get(key)) is not None:
                    results[label] = json.loads(raw)
            return set(keys) - set(results)

        with self._processes(commands, total, keys, env) as processes:
            self._wait(processes, pending, f"handle {total} events", 60 + total / 200)
            if done is not None:
                done()
        self.client.flushdb()
        if reports is not None:
            reports.update(results)
        return {label: (float(r["first"]), float(r["last"])) for label, r in results.items()}

    def _drain_rate(self, argv: list[str], total: int, fill: Callable[[], None],
                    register: Sequence[str] = (), env: Mapping[str, str] | None = None) -> float:
        ((first, last),) = self._drain({"worker": argv}, total, fill, register, env=env).values()
        return total / (last - first)

    def _fill(self, total: int, copies: int) -> None:
        """Emit ``total`` events with rocketman, in batches of 1000; check each went to ``copies`` queues."""
        app = self.app()
        try:
            for first in range(0, total, 1000):
                app.emit_many([(EVENT, {"n": n}) for n in range(first, min(total, first + 1000))])
            stats = app.stats()
        finally:
            app.shutdown(timeout=1)
        if stats["queued"] != total * copies or stats["parked"]:
            raise RuntimeError(f"{total} events were not routed to {copies} subscriptions: {stats}")

    def rocketman_rate(self, total: int, threads: int) -> float:
        argv = [script("rocketman"), "worker", "bench._redis_consumer", "--storage", self.storage,
                "--workers", str(threads)]
        return self._drain_rate(argv, total, lambda: self._fill(total, 1), register=(CONSUMER,))

    def fanout_drain(self, total: int) -> Fanout:
        """3 subscriptions, each hosted by its own worker process, draining the same ``total`` events."""
        commands = {
            label: [script("rocketman"), "worker", "bench._subscriber", "--storage", self.storage,
                    "--workers", str(SUBSCRIBER_THREADS)]
            for label in SUBSCRIBERS
        }
        windows = self._drain(commands, total, lambda: self._fill(total, len(SUBSCRIBERS)),
                              register=list(SUBSCRIBERS.values()))
        rates = {label: total / (last - first) for label, (first, last) in windows.items()}
        span = max(last for _, last in windows.values()) - min(first for first, _ in windows.values())
        return Fanout(rates, len(windows) * total / span)

    def raw_rate(self, total: int, threads: int) -> float:
        def fill() -> None:
            for first in range(0, total, 1000):
                pipe = self.client.pipeline(transaction=False)
                pipe.lpush(RAW_QUEUE, *[_envelope(n) for n in range(first, min(total, first + 1000))])
                pipe.execute()

        return self._drain_rate([python(), "-m", "bench._raw_consumer", str(threads)], total, fill)

    def _drain_cost(self, argv: list[str], total: int, fill: Callable[[], None],
                    register: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Drained:
        """:meth:`_drain_rate`, and the redis-server CPU per event over the same window.

        The worker's tally reads INFO cpu at its first and its last handler
        call (``BENCH_SERVER_CPU``), so that the worker's start-up is not
        counted, as it is not in the rate.
        """
        reports: dict[str, Any] = {}
        ((first, last),) = self._drain({"worker": argv}, total, fill, register,
                                       env={**(env or {}), "BENCH_SERVER_CPU": "1"},
                                       reports=reports).values()
        report = reports["worker"]
        cpu = float(report["server_cpu_last"]) - float(report["server_cpu_first"])
        return Drained(total / (last - first), cpu / total * 1e6)

    def rocketman_cost(self, total: int, threads: int, speedups: bool = False) -> Drained:
        """rocketman's worker process draining ``total`` events, and what it cost Redis.

        ``speedups``: with msgspec decoding (``rocketman-core[speedups]``);
        without, the worker parses JSON with the standard library, as every
        other contender does.
        """
        argv = [script("rocketman"), "worker", "bench._redis_consumer", "--storage", self.storage,
                "--workers", str(threads)]
        return self._drain_cost(argv, total, lambda: self._fill(total, 1), register=(CONSUMER,),
                                env={"ROCKETMAN_SPEEDUPS": "1" if speedups else "0"})

    def raw_batch_cost(self, total: int, threads: int = 1) -> Drained:
        """The ceiling: a consumer popping 64 at a time with one Lua RPOP, json-decoding each."""
        def fill() -> None:
            for first in range(0, total, 1000):
                self.client.lpush(RAW_QUEUE, *[_envelope(n) for n in range(first, min(total, first + 1000))])

        return self._drain_cost([python(), "-m", "bench._raw_batch_consumer", str(threads)], total, fill)

    def dramatiq_rate(self, total: int) -> float:
        os.environ["BENCH_REDIS_URL"] = self.url  # read by the actor module at import
        from . import _dramatiq_app

        def fill() -> None:
            for number in range(total):
                _dramatiq_app.bench_event.send({"n": number})

        argv = [script("dramatiq"), "bench._dramatiq_app", "--processes", "1", "--threads", "5"]
        return self._drain_rate(argv, total, fill)

    def rq_rate(self, total: int) -> float:
        from rq import Queue

        from ._rq_jobs import bench_job

        def fill() -> None:
            queue = Queue("bench", connection=self.client)
            for number in range(total):
                queue.enqueue(bench_job, {"n": number})

        # SimpleWorker runs jobs in the worker process: rq's default forks per job,
        # a cost its users who care about throughput do not pay.
        argv = [script("rq"), "worker", "--burst", "--quiet", "--url", self.url,
                "--worker-class", "rq.worker.SimpleWorker", "bench"]
        return self._drain_rate(argv, total, fill)

    def _check_queued(self, peer: str, length: int, total: int) -> None:
        """Fail unless the fill left all ``total`` messages where the peer's worker reads them."""
        if length != total:
            raise RuntimeError(f"{peer}: {length} of {total} messages in its queue after the fill")

    def celery_rate(self, total: int) -> float:
        """Celery, Redis broker, no result backend: ``delay`` fills, 1 worker ``-P threads -c 5`` drains."""
        os.environ["BENCH_REDIS_URL"] = self.url  # read by the app module at import
        from . import _celery_app

        def fill() -> None:
            # The FLUSHDB of the run took the queue's binding away: declare it again
            # (else kombu routes to no queue and the messages are lost).
            with _celery_app.app.connection_for_write() as connection:
                _celery_app.app.amqp.queues[_celery_app.QUEUE](connection.default_channel).declare()
            for number in range(total):
                _celery_app.bench_event.delay({"n": number})
            self._check_queued("celery", self.client.llen(_celery_app.QUEUE), total)

        argv = [script("celery"), "-A", "bench._celery_app", "worker", "-P", "threads", "-c", "5",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
        return self._drain_rate(argv, total, fill)

    def taskiq_rate(self, total: int, max_async_tasks: int = 5) -> float:
        """taskiq + taskiq-redis ListQueueBroker: ``kiq`` fills, 1 worker process drains.

        ``max_async_tasks``: its bound on tasks in flight (5 beside rocketman's
        5 worker threads; the async section gives it rocketman's async bound).
        """
        import asyncio

        os.environ["BENCH_REDIS_URL"] = self.url
        from . import _taskiq_app

        if self.url != _taskiq_app.URL:
            # Imported by an earlier section, bound to its server (stopped
            # since): the kiq calls failed with SendTaskError in a full run.
            _taskiq_app = importlib.reload(_taskiq_app)

        async def send() -> None:
            await _taskiq_app.broker.startup()
            try:
                for number in range(total):
                    await _taskiq_app.bench_event.kiq({"n": number})
            finally:
                await _taskiq_app.broker.shutdown()

        def fill() -> None:
            asyncio.run(send())
            self._check_queued("taskiq", self.client.llen(_taskiq_app.QUEUE), total)

        argv = [script("taskiq"), "worker", "bench._taskiq_app:broker", "--workers", "1",
                "--max-async-tasks", str(max_async_tasks), "--no-configure-logging"]
        return self._drain_rate(argv, total, fill)

    def arq_rate(self, total: int) -> float:
        """arq: ``enqueue_job`` fills, ``arq bench._arq_app.WorkerSettings`` (max_jobs=5) drains."""
        import asyncio

        from arq import create_pool
        from arq.connections import RedisSettings
        from arq.constants import default_queue_name

        async def send() -> None:
            pool = await create_pool(RedisSettings.from_dsn(self.url))
            try:
                for number in range(total):
                    await pool.enqueue_job("bench_event", {"n": number})
            finally:
                await pool.aclose()

        def fill() -> None:
            asyncio.run(send())
            self._check_queued("arq", self.client.zcard(default_queue_name), total)

        return self._drain_rate([script("arq"), "bench._arq_app.WorkerSettings"], total, fill)

    def huey_rate(self, total: int) -> float:
        """huey, RedisHuey: calling the task fills, ``huey_consumer -w 5 -k thread`` drains."""
        os.environ["BENCH_REDIS_URL"] = self.url
        from . import _huey_app

        def fill() -> None:
            for number in range(total):
                _huey_app.bench_event({"n": number})
            self._check_queued("huey", self.client.llen(_huey_app.huey.storage.queue_key), total)

        argv = [script("huey_consumer"), "bench._huey_app.huey", "-w", "5", "-k", "thread", "-q"]
        return self._drain_rate(argv, total, fill)


def _stop_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker's process group (dramatiq forks), then SIGKILL those that linger."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:200]


def redis_section(config: Config, rows: bool = True, scaling: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Rows for emit, emit_many and end-to-end; and the worker-count series for the plot."""
    from rocketman_relay_redis.testing import RedisServer

    server = RedisServer(appendonly=False)
    server.start()
    try:
        bench = _Bench(server.url)
        found = _rows(bench, config) + _fanout_rows(bench, config) if rows else []
        if rows:
            from ._steady import steady_rows

            found += steady_rows(bench, config)
        if rows:
            from ._redis_latency import latency_rows

            found += latency_rows(bench, config)
        series: dict[str, Any] = _scaling(bench, config) if scaling else {}
        if bench.unavailable:
            series["unavailable"] = bench.unavailable
        return found, series
    finally:
        server.close()


def _rows(bench: _Bench, config: Config) -> list[Row]:
    """The headline Redis figures, each the median of PAIRED_RUNS (or WIDE_RUNS) interleaved runs with its range.

    Every system is given the same events in the same way: the producers
    beside one LPUSH (of one value, or of BATCH values) on a bare connection
    with json.dumps in the loop; the consumers drain the same number of
    pre-filled events, each from its first handler call to its last.
    """
    section = "redis"
    missing = bench.unavailable
    note = f"rocketman's Redis storage is not available: {missing}" if missing else ""
    runs = PAIRED_RUNS

    def with_ours(ours: Callable[[], Any], *baselines: Callable[[], Any], runs: int = runs
                  ) -> tuple[list[Any], list[list[Any]], str]:
        measures = list(baselines) if missing else [ours, *baselines]
        results, problem = _paired(measures, runs)
        mine = [] if missing else results.pop(0)
        return mine, results, problem

    # 20,000 one-at-a-time emits: about 2 s a run here, so that one of the
    # machine's hiccups does not decide a run (3,000 swung 0.8x-1.2x); and
    # WIDE_RUNS of them, as one round trip per event still spreads widest.
    singles = config.pick(20_000, 1000)
    emit, (lpush,), problem = with_ours(lambda: bench.emit_rate(singles),
                                        lambda: bench.bare_lpush_encoding(singles).rate, runs=WIDE_RUNS)
    many = config.pick(20_000, 5_000)
    emitted_many, (one_lpush,), problem_many = with_ours(
        lambda: bench.emit_many_rate(many), lambda: bench.bare_lpush_many_encoding(many).rate)
    # Against the ceiling, 100,000 events: a third of a second at either's pace.
    # 10,000 (the peers' count) drain in some 35 ms, which measures the warm-up
    # more than the rate: 9 runs' ratios spread 0.67-1.08 there, 5 runs' over
    # 100,000 1.04-1.17 on the same machine. The 10,000-event ratio is kept,
    # for the record.
    ample = config.pick(100_000, 10_000)
    costs, (ceilings, *accelerated), problem_ceiling = with_ours(
        lambda: bench.rocketman_cost(ample, 5), lambda: bench.raw_batch_cost(ample),
        *([] if missing else [lambda: bench.rocketman_cost(ample, 5, speedups=True)]), runs=WIDE_RUNS)
    ample_rates = [cost.rate for cost in costs]
    fast = [cost.rate for cost in accelerated[0]] if accelerated else []
    # The same events for every consumer: long enough to dominate start-up for
    # the peers, at a second or more each.
    total = config.pick(10_000, 2_000)
    shorts, (short_ceilings, raw5, raw1), problem_e2e = with_ours(
        lambda: bench.rocketman_cost(total, 5), lambda: bench.raw_batch_cost(total),
        lambda: bench.raw_rate(total, 5), lambda: bench.raw_rate(total, 1), runs=WIDE_RUNS)
    e2e = [cost.rate for cost in shorts]
    peers: dict[str, list[float]] = {}
    problems: dict[str, str] = {}
    measured: tuple[tuple[str, Callable[[int], float]], ...] = (
        ("dramatiq", bench.dramatiq_rate), ("rq", bench.rq_rate), ("celery", bench.celery_rate),
        ("taskiq", bench.taskiq_rate), ("arq", bench.arq_rate), ("huey", bench.huey_rate))
    for name, measure in measured:
        (rates,), why = _paired([lambda m=measure: m(total)], config.pick(3, 1))  # type: ignore[misc]
        peers[name], problems[name] = rates, why

    ample_figure = f"end-to-end, 1 worker process of 5 threads, {ample:,} events"
    ample_counts = {"events": ample, "runs": WIDE_RUNS}
    e2e_figure = f"end-to-end, 1 worker process of 5 threads, {total:,} events"
    counts = {"events": total, "runs": WIDE_RUNS}
    return [
        Row.paired(section, "emit, one at a time", "events/s", emit,
                   "LPUSH on a bare connection, json.dumps in the loop", lpush,
                   Target(">=", 0.9), note=note or problem,
                   extra={"events": singles, "subscriptions": 1, "runs": WIDE_RUNS}),
        Row.paired(section, f"emit_many, batches of {BATCH}", "events/s", emitted_many,
                   f"one LPUSH of {BATCH} values, bare connection, json.dumps in the loop", one_lpush,
                   Target(">=", 1.0), note=note or problem_many, extra={"events": many, "subscriptions": 1}),
        Row.paired(section, ample_figure, "events/s", ample_rates, _CEILING,
                   [c.rate for c in ceilings], Target(">=", 0.8), note=note or problem_ceiling,
                   extra=ample_counts),
        Row.paired(section, f"{ample_figure}: Redis server CPU per event", "µs",
                   [c.server_us for c in costs], _CEILING, [c.server_us for c in ceilings],
                   Target("<=", 3.0, on="value"), note=note or problem_ceiling,
                   extra={**ample_counts, "method": "INFO cpu (used_cpu_user + used_cpu_sys) of the "
                          "benchmark's redis-server, from the worker's first handler call to its last"}),
        Row.paired(section, f"{ample_figure}, with rocketman-core[speedups] (msgspec decoding)", "events/s",
                   fast, "rocketman, standard-library JSON (every other row)", ample_rates,
                   note=note or problem_ceiling, extra=ample_counts),
        Row.paired(section, f"{e2e_figure} (for the record: the peers' count, judged over {ample:,})",
                   "events/s", e2e, _CEILING, [c.rate for c in short_ceilings],
                   note=note or problem_e2e, extra=counts),
        Row.paired(section, e2e_figure, "events/s", e2e, "BLMOVE + LREM consumer, 5 threads", raw5,
                   Target(">=", 3.0), note=note or problem_e2e, extra=counts),
        Row.paired(section, e2e_figure, "events/s", e2e, "BLMOVE + LREM consumer, 1 thread", raw1,
                   note=note or problem_e2e, extra=counts),
        # The peers run apart (each takes seconds): their runs are not interleaved with ours.
        Row.paired(section, e2e_figure, "events/s", e2e, "dramatiq, 1 process of 5 threads",
                   peers["dramatiq"], Target(">=", 10.0), note=note or problems["dramatiq"],
                   extra={**counts, "peer_runs": config.pick(3, 1)}),
        Row.paired(section, e2e_figure, "events/s", e2e, "rq SimpleWorker (no fork per job)", peers["rq"],
                   note=note or problems["rq"], extra={**counts, "peer_runs": config.pick(3, 1)}),
        # Informational, no target: each peer's own producer API fills, its own worker drains.
        *(Row.paired(section, e2e_figure, "events/s", e2e, described, peers[name],
                     note=note or problems[name], extra={**counts, "peer_runs": config.pick(3, 1),
                                                         "peer_setup": setup})
          for name, described, setup in _PEER_ROWS),
    ]


#: The raw ceiling of a batching consumer: what rocketman's end to end is judged against.
_CEILING = "raw ceiling: 1 thread, Lua RPOP of 64 + json.loads, no lease or ack"

#: The informational end-to-end peers: (name, the row's baseline, how it is set up).
_PEER_ROWS = (
    ("celery", "Celery, Redis broker, 1 worker -P threads -c 5, no result backend",
     "celery.delay fills; celery -A bench._celery_app worker -P threads -c 5 --without-gossip "
     "--without-mingle --without-heartbeat; task_ignore_result; default prefetch (4 per thread)"),
    ("taskiq", "taskiq ListQueueBroker, 1 worker process, --max-async-tasks 5",
     "kiq fills (LPUSH); taskiq worker bench._taskiq_app:broker --workers 1 --max-async-tasks 5 "
     "(taskiq's default is 2 processes, 100 async tasks each); async handler; no result backend"),
    ("arq", "arq, 1 worker, max_jobs=5 (default poll_delay 0.5 s)",
     "enqueue_job fills; arq bench._arq_app.WorkerSettings, max_jobs=5 (default 10), keep_result=0; "
     "arq's default poll_delay (0.5 s) and queue_read_limit (100): at most ~100 jobs read per poll"),
    ("huey", "huey RedisHuey, 1 consumer -w 5 -k thread",
     "calling the task fills; huey_consumer bench._huey_app.huey -w 5 -k thread; blocking BRPOP; "
     "None results not stored"),
)


def _paired(measures: Sequence[Callable[[], Any]], runs: int) -> tuple[list[list[Any]], str]:
    """Run the measures ``runs`` times each, alternating; say why one failed, if one did.

    A measure that fails is not run again and its runs are dropped (its row
    then shows the others' figures without a ratio); the others go on.
    """
    results: list[list[Any]] = [[] for _ in measures]
    failed: dict[int, str] = {}
    for _ in range(runs):
        for index, measure in enumerate(measures):
            if index in failed:
                continue
            gc.collect()
            try:
                results[index].append(measure())
            except Exception as error:
                failed[index] = _reason(error)
                results[index] = []
    return results, "; ".join(failed.values())


def _against(ours: Callable[[], Any] | None, baseline: Callable[[], Any],
             runs: int) -> tuple[list[Any], list[Any], str]:
    """Ours and the baseline, ``runs`` times each, alternated; only the baseline when ours is None."""
    if ours is None:
        (theirs,), problem = _paired([baseline], runs)
        return [], theirs, problem
    (mine, theirs), problem = _paired([ours, baseline], runs)
    return mine, theirs, problem


def _fanout_rows(bench: _Bench, config: Config) -> list[Row]:
    """The subscriptions figures: fan-out emit and emit_many, and 3 subscriptions end to end."""
    section = "redis"
    missing = bench.unavailable
    note = f"rocketman's Redis storage is not available: {missing}" if missing else ""
    described = f"10 subscriptions ({FANOUT_MATCHING} match)"

    rows: list[Row] = []
    # (figure, ours, the judged baseline (same JSON work), the round trips alone, events, target,
    # runs: one round trip per event spreads widest)
    emits: list[tuple[str, Callable[[int], Produced], tuple[str, Callable[[int], Produced]],
                      tuple[str, Callable[[int], Produced]], int, float, int]] = [
        (f"emit, {described}, one at a time", bench.fanout_emit,
         ("LPUSH on a bare connection, json.dumps in the loop", bench.bare_lpush_encoding),
         ("LPUSH on a bare connection, bytes encoded before the clock", bench.bare_lpush),
         config.pick(20_000, 2000), 0.9, WIDE_RUNS),
        (f"emit_many of {BATCH}, {described}", bench.fanout_emit_many,
         (f"one LPUSH of {BATCH} values, bare connection, json.dumps in the loop",
          bench.bare_lpush_many_encoding),
         (f"one LPUSH of {BATCH} values, bare connection, bytes encoded before the clock",
          bench.bare_lpush_many),
         config.pick(50_000, 10_000), 0.5, PAIRED_RUNS),
    ]
    for figure, ours, (baseline_name, baseline), (bytes_name, bytes_only), total, target, runs in emits:
        measures: list[Callable[[], Produced]] = [
            lambda t=total, b=baseline: b(t),  # type: ignore[misc]
            lambda t=total, b=bytes_only: b(t),  # type: ignore[misc]
        ]
        if not missing:
            measures.insert(0, lambda t=total, o=ours: o(t))  # type: ignore[misc]
        results, problem = _paired(measures, runs)
        mine = [] if missing else results.pop(0)
        theirs = results[0]
        extra = {
            "events": total, "runs": runs, "subscriptions": len(FANOUT_PATTERNS),
            "matching": FANOUT_MATCHING,
            "envelope_bytes": {"rocketman": [p.envelope for p in mine],
                               "baseline": [p.envelope for p in theirs]},
            "client_cpu_us_per_event": {"rocketman": [p.client_us for p in mine],
                                        "baseline": [p.client_us for p in theirs]},
        }
        why = note or problem
        rows += [
            Row.paired(section, f"{figure}, {total:,} events", "events/s",
                       [p.rate for p in mine], baseline_name, [p.rate for p in theirs],
                       Target(">=", target), note=why, extra=extra),
            Row.paired(section, f"{figure}: Redis server CPU per event", "µs",
                       [p.server_us for p in mine], baseline_name, [p.server_us for p in theirs],
                       note=why, extra=extra),
        ]
        pre_encoded = results[1]
        rows.append(Row.paired(
            section, f"{figure}, {total:,} events (for the record: round trips alone)", "events/s",
            [p.rate for p in mine], bytes_name, [p.rate for p in pre_encoded], note=why,
            extra={**extra, "client_cpu_us_per_event": {
                "rocketman": [p.client_us for p in mine],
                "baseline": [p.client_us for p in pre_encoded]},
                "server_cpu_us_per_event": {"rocketman": [p.server_us for p in mine],
                                            "baseline": [p.server_us for p in pre_encoded]},
                "envelope_bytes": {"rocketman": [p.envelope for p in mine],
                                   "baseline": [p.envelope for p in pre_encoded]}}))

    # 3 subscriptions, each in its own worker process, against dramatiq on the same N events.
    total, runs = config.pick(5000, 2000), PAIRED_RUNS
    fanouts, dramatiq, problem = _against(
        None if missing else (lambda: bench.fanout_drain(total)), lambda: bench.dramatiq_rate(total), runs)
    figure = (f"end-to-end, 3 subscriptions, each its own worker process of {SUBSCRIBER_THREADS} "
              f"threads, {total:,} events")
    dramatiq_name = f"dramatiq, 1 process of 5 threads, {total:,} events"
    counts: dict[str, Any] = {
        "events": total, "runs": runs,
        "rates": [f.rates for f in fanouts],
        "overall_events_per_s": [f.overall for f in fanouts],
        "method": "subscriptions created by starting the workers once; stopped; queues filled; "
                  "workers started again; each timed from its first to its last handler call",
    }
    why = note or problem
    for label, name in SUBSCRIBERS.items():
        rows.append(Row.paired(section, f"{figure}: {name}", "events/s",
                               [f.rates[label] for f in fanouts], dramatiq_name, dramatiq,
                               note=why, extra=counts))
    rows.append(Row.paired(section, f"{figure}: slowest subscription of each run", "events/s",
                           [min(f.rates.values()) for f in fanouts], dramatiq_name, dramatiq,
                           Target(">=", 10.0), note=why, extra=counts))
    return rows


def _scaling(bench: _Bench, config: Config) -> dict[str, Any]:
    """One worker process with 1, 2, 5 and 10 threads: rocketman and the BLMOVE + LREM consumer, medians of 3 runs."""
    ours_total, raw_total = config.pick(20_000, 10_000), config.pick(4_000, 1_500)
    ours: list[float | None] = []
    raw: list[float] = []
    for threads in WORKER_COUNTS:
        mine, theirs = interleave(
            config.pick(3, 1),
            lambda t=threads: float("nan") if bench.unavailable else bench.rocketman_rate(ours_total, t),  # type: ignore[misc]
            lambda t=threads: bench.raw_rate(raw_total, t),  # type: ignore[misc]
        )
        ours.append(None if bench.unavailable else median(mine))
        raw.append(median(theirs))
    return {"workers": list(WORKER_COUNTS), "rocketman": ours, "BLMOVE + LREM": raw,
            "rocketman_events": ours_total, "baseline_events": raw_total}
