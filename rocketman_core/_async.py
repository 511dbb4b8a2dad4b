"""Async consumers: one event loop per process, fed by the workers.

The workers stay what they are: threads that block on the storage, reserve
a batch and dispatch it. A delivery whose consumer is an ``async def`` is
handed to the :class:`AsyncRunner` instead of being called: the worker
takes a place (at most ``async_concurrency`` in flight), leaves the
coroutine to the loop and goes on with its batch. The loop runs every
coroutine as a task, all of them awaiting together. While a coroutine
awaits, its delivery counts as held: the heartbeat renews its lease.

Who runs the loop: a loop thread (``rocketman-loop``) while anything on it
awaits or is scheduled, with a settler thread that records the outcomes
(ack, retry, dead letter) in batches, so that no storage call runs on the
loop. When nothing is left on the loop, the loop thread parks, and a worker
that hands it a batch runs the loop itself, in its own thread, for as long
as the batch's first steps take (a *pass*): a coroutine that never awaits
then costs no thread hand-off, and its outcome is the worker's to record,
its ack sent with the worker's next reserve as a plain consumer's is. A
coroutine that awaits leaves something on the loop; the pass ends and the
loop thread takes over. Only one thread runs the loop at a time (the
*baton*); asyncio allows a loop to be run by one thread after another.

Why one loop per process rather than one per worker thread: what a consumer
keeps between events (a client, a pool, a lock) is bound to the loop it was
made on, and one loop keeps it usable by every event, as in any asyncio
program; the in-flight bound is one number for the process, whatever the
worker count; blocking the loop is watched in one place.

The loop comes from the executor when it makes loops (``new_event_loop()``,
see :class:`~rocketman_core.EventLoops`), else from asyncio. The runner owns
its lifecycle: shutdown waits for the coroutines in flight, then cancels
them and gives their deliveries back (a cancelled consumer is not a failure).

Nothing here imports asyncio until the first async consumer's event.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import TYPE_CHECKING, Any

from ._contracts import Delivery
from ._envelope import Event

if TYPE_CHECKING:
    import asyncio

    from ._consumers import ConsumerSpec

__all__ = ["GIVEN_BACK", "AsyncRunner", "Job", "run_inline"]

logger = logging.getLogger("rocketman")

#: How long the loop may be busy in one stretch before the consumer running
#: then is said to block it (asyncio's debug mode uses the same 0.1 s).
BLOCKING = 0.1
_TICK = 0.02  # how often the loop thread says it is alive, and sees whether it may park
#: What a pass reads of an asyncio loop (see AsyncRunner._pass); a loop without them is never passed.
_PASSING = ("_ready", "_scheduled", "_thread_id", "_asyncgen_firstiter_hook", "_asyncgen_finalizer_hook")
_PASS_TURNS = 8  # the most turns of the loop a worker's pass runs before leaving the rest to the loop thread


class _GivenBack:
    """The outcome of a job cancelled by shutdown: its delivery goes back, unhandled."""

    def __repr__(self) -> str:
        return "GIVEN_BACK"


GIVEN_BACK: Any = _GivenBack()


class Job:
    """One async consumer's delivery, from the worker that submitted it until its outcome is recorded.

    ``outcome`` is None for success, the exception it raised, or
    :data:`GIVEN_BACK`; ``abandoned`` when a stop that cannot wait gave its
    delivery back already (its outcome is then ignored).
    """

    __slots__ = ("abandoned", "cancelled", "delivery", "done", "duration", "event", "outcome",
                 "spec", "task")

    def __init__(self, delivery: Delivery, event: Event, spec: ConsumerSpec) -> None:
        self.delivery = delivery
        self.event = event
        self.spec = spec
        self.task: asyncio.Task[None] | None = None
        self.outcome: Any = None
        self.duration = 0.0
        self.cancelled = False
        self.abandoned = False
        self.done = False


def _code_of(function: Callable[..., Any]) -> Any:
    """The code object an async consumer's frames run, to find it on the loop's stack."""
    function = getattr(function, "func", function)  # a functools.partial
    code = getattr(function, "__code__", None)
    if code is None:
        code = getattr(type(function).__dict__.get("__call__"), "__code__", None)
    return code


class AsyncRunner:
    """Runs async consumers on one loop thread; their outcomes go to ``settle`` on a settler thread.

    :param new_loop: makes the event loop (the executor's, or asyncio's).
    :param concurrency: the most jobs in flight, submitted and not settled.
    :param settle: records the outcomes of finished jobs (called on the
        settler thread, in batches, never on the loop).
    :param waiting: how many submitted jobs may wait to start (at least
        ``concurrency``).
    """

    def __init__(self, new_loop: Callable[[], asyncio.AbstractEventLoop], concurrency: int,
                 settle: Callable[[Sequence[Job]], None], waiting: int = 0) -> None:
        self._new_loop = new_loop
        self._settle = settle
        self._limit = concurrency
        self._waiting = max(concurrency, waiting)
        self._lock = threading.Lock()
        # Rung when jobs are settled: for workers waiting for room, and for stop().
        self._settled = threading.Condition(self._lock)
        self._jobs: set[Job] = set()  # submitted and not settled
        self._running = 0  # started on the loop and not finished: what the bound counts (loop only)
        self._waiting_for_room = 0  # workers waiting in submit()
        self._driving = False  # a driver task runs jobs now, and takes on what waits (loop only)
        self._pending: deque[Job] = deque()  # submitted, not started on the loop
        self._finished: deque[Job] = deque()  # done on the loop, not settled
        self._start_scheduled = False
        self._wake_scheduled = False
        self._wake = threading.Event()
        self._closing = False
        self._ended = False
        # Held by the thread running the loop now: the loop thread, or a worker in a pass.
        self._baton = threading.Lock()
        self._runner: int | None = None  # that thread's id, for the watchdog
        self._passing = False  # a worker's pass runs the loop: what finishes is the worker's to settle
        self._can_pass = False  # the loop is asyncio's own, whose ready and scheduled callbacks a pass reads
        self._tick: asyncio.TimerHandle | None = None  # the loop thread's next _alive
        self._tasks = 0  # tasks alive on the loop, any of them (counted by the task factory)
        self._wanted = threading.Event()  # the loop thread is wanted: something is left on the loop
        self._loop_here: Callable[[], object] = lambda: None  # the loop running in the calling thread
        self._driver: Callable[[Any, str], asyncio.Task[None]]  # makes a driver task (see _count_tasks)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._settler: threading.Thread | None = None
        self._codes: dict[Any, str] = {}  # consumer code -> consumer name, for the loop's stack
        self._specs: set[ConsumerSpec] = set()
        self._warned: set[str] = set()
        self._alive_at = 0.0

    # -- the workers' side ---------------------------------------------------

    def submit(self, jobs: Sequence[Job], stopping: threading.Event | None = None) -> Sequence[Job]:
        """Hand jobs to the loop; return those not taken because the runner is stopping.

        At most ``async_concurrency`` jobs run at once: the loop starts the
        next one itself as one finishes, with no thread to wake. Up to
        ``waiting`` more (a batch per worker, at least ``async_concurrency``)
        may wait to start, so that the loop need not wait for a worker's next
        batch; past that a worker waits here for room, so that what the
        workers reserve stays bounded too.
        """
        loop = self._loop or self._start()
        for job in jobs:
            spec = job.spec
            if spec not in self._specs:
                self._specs.add(spec)
                self._codes[_code_of(spec.function)] = spec.name
        taken, waiting, settled = 0, self._waiting, self._settled
        while taken < len(jobs):
            with settled:
                room = waiting - len(self._pending)
                if self._closing or (stopping is not None and stopping.is_set()):
                    return jobs[taken:]
                if room <= 0:
                    self._waiting_for_room += 1
                    settled.wait(0.05)
                    self._waiting_for_room -= 1
                    continue
                batch = jobs[taken:taken + room]
                taken += len(batch)
                self._jobs.update(batch)
                self._pending.extend(batch)
                schedule = not self._start_scheduled
                self._start_scheduled = True
            self._run_pending(loop, schedule)
        return ()

    def _run_pending(self, loop: asyncio.AbstractEventLoop, schedule: bool) -> None:
        """Start the jobs waiting: in a pass of this thread when nobody runs the loop, else on the thread that does.

        The baton's protocol: a submitter adds to ``_pending`` before it
        tries the baton; a holder looks at ``_pending`` after it lets go.
        So either the submitter takes the baton, or the holder sees its jobs.
        """
        passing = self._can_pass and self._loop_here() is None
        while passing and self._baton.acquire(blocking=False):
            try:
                self._pass(loop)
            finally:
                self._passing = False
                self._runner = None
                self._baton.release()
            if self._busy(loop):
                self._wanted.set()  # something awaits or is scheduled: the loop thread's now
                return
            if not self._pending and not loop._ready:  # type: ignore[attr-defined]
                return
            # (Handed more while it passed: pass again.)
        if schedule and not (passing and self._passing):
            # (A worker passing now sees these jobs after its pass, if not in it.)
            try:
                loop.call_soon_threadsafe(self._start_pending)
            except RuntimeError:  # the loop closed under a stop that could not wait
                self._start_scheduled = False
                return
        if not passing:
            self._wanted.set()

    def _pass(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the loop's ready callbacks in this thread (holding the baton), until none is ready.

        What a turn of ``run_forever`` does after it polls the selector,
        without the poll: a system call that gives up the GIL to the other
        workers and waits to take it back, once per batch (with it, trivial
        async consumers ran at 0.70x of plain ones; without it, 0.85x). What
        awaits I/O or a timer is left to the loop thread, which polls. The
        loop is marked running in this thread meanwhile, as ``run_forever``
        marks it (``get_running_loop()``, ``is_running()``, async generators'
        finalizers).
        """
        import asyncio

        self._alive_at = time.monotonic()
        self._runner = threading.get_ident()  # (after _alive_at: the watchdog reads them the other way)
        self._passing = True
        self._start_pending()  # (its driver task's first step is the first ready callback)
        ready: deque[asyncio.Handle] = loop._ready  # type: ignore[attr-defined]
        if not ready:
            return
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
                               finalizer=loop._asyncgen_finalizer_hook)  # type: ignore[attr-defined]
        loop._thread_id = self._runner  # type: ignore[attr-defined]
        asyncio._set_running_loop(loop)
        try:
            for _ in range(_PASS_TURNS):
                for _ in range(len(ready)):
                    handle = ready.popleft()
                    if not handle.cancelled():
                        handle._run()
                if not ready:
                    break
        finally:
            asyncio._set_running_loop(None)
            loop._thread_id = None  # type: ignore[attr-defined]
            sys.set_asyncgen_hooks(*hooks)

    def _busy(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Something on the loop awaits or is scheduled: a task alive, a job running, a timer set."""
        if self._tasks or self._running or not self._can_pass:
            return True
        return any(not timer.cancelled() for timer in loop._scheduled)  # type: ignore[attr-defined]

    def _quiet(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Nothing is left on the loop: nothing busy, no callback ready, no job waiting."""
        return not (self._pending or self._busy(loop) or loop._ready)  # type: ignore[attr-defined]

    def _park_if_quiet(self) -> None:
        """(On the loop thread.) Stop the loop when nothing is left on it: workers pass again."""
        loop = self._loop
        if loop is not None and not (self._passing or self._ended) and self._quiet(loop):
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None
            loop.stop()

    def take_finished(self) -> list[Job]:
        """The jobs finished in passes and not settled yet: the caller settles them, then calls :meth:`settled`."""
        finished, batch = self._finished, []
        while finished:
            batch.append(finished.popleft())
        return batch

    def settled(self, jobs: Sequence[Job]) -> None:
        """The outcomes of ``jobs`` (from :meth:`take_finished`) are recorded."""
        with self._settled:
            self._jobs.difference_update(jobs)
            self._settled.notify_all()

    def deliveries(self) -> list[Delivery]:
        """The deliveries of every job in flight (their leases are renewed with the workers')."""
        with self._lock:
            return [job.delivery for job in self._jobs if not job.abandoned]

    @property
    def in_flight(self) -> int:
        """How many jobs are submitted and not settled."""
        return len(self._jobs)

    # -- the loop's side -----------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._lock:
            if self._loop is None:
                loop = self._new_loop()
                if loop.is_closed() or loop.is_running():
                    state = "closed" if loop.is_closed() else "running"
                    raise RuntimeError(
                        f"the executor's new_event_loop() returned a {state} loop ({loop!r}): "
                        "async consumers need a new loop, not running, for rocketman's loop "
                        "thread; fix the executor")
                self._alive_at = time.monotonic()
                self._count_tasks(loop)
                self._loop_here = asyncio._get_running_loop
                self._can_pass = isinstance(loop, asyncio.BaseEventLoop) and all(
                    hasattr(loop, name) for name in _PASSING)
                if not self._can_pass:
                    self._wanted.set()  # a loop that cannot say it is idle runs on its thread always
                self._loop_thread = threading.Thread(
                    target=self._run_loop, args=(loop,), name="rocketman-loop", daemon=True)
                self._settler = threading.Thread(
                    target=self._run_settler, name="rocketman-settler", daemon=True)
                self._loop = loop
                self._loop_thread.start()
                self._settler.start()
            return self._loop

    def _count_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count the tasks alive on the loop (a consumer's own included), through its task factory."""
        import asyncio

        made = loop.get_task_factory()

        def driver(coro: Any, name: str) -> asyncio.Task[None]:
            # Not counted: a driver is alive while one of its jobs runs, and _running says so.
            if made is None:
                return asyncio.Task(coro, loop=loop, name=name)
            task = made(loop, coro)
            set_name = getattr(task, "set_name", None)
            if set_name is not None:
                set_name(name)
            return task  # type: ignore[return-value]

        self._driver = driver

        def ended(_: object) -> None:
            self._tasks -= 1
            if not self._tasks and not self._passing:
                self._park_if_quiet()

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> Any:
            task = made(loop, coro, **options) if made is not None else asyncio.Task(
                coro, loop=loop, **options)
            self._tasks += 1
            task.add_done_callback(ended)
            return task

        loop.set_task_factory(factory)

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop thread: run the loop while anything is on it; park when nothing is, to let workers pass."""
        import asyncio

        asyncio.set_event_loop(loop)
        baton, wanted = self._baton, self._wanted
        try:
            while not self._ended:
                wanted.wait()
                wanted.clear()
                with baton:
                    self._alive_at = time.monotonic()
                    self._runner = threading.get_ident()
                    loop.call_soon(self._start_pending)  # (what a pass left waiting)
                    loop.call_soon(self._alive)
                    loop.run_forever()
                    self._runner = None
                if self._pending or not self._quiet(loop):
                    wanted.set()  # (what came while it parked)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            except Exception:
                logger.debug("closing the async consumers' generators failed", exc_info=True)
            loop.close()

    def _alive(self) -> None:
        self._alive_at = time.monotonic()
        self._tick = None
        loop = self._loop
        if loop is None or self._ended or self._quiet(loop):
            if loop is not None:
                loop.stop()  # park: the next batch's worker runs the loop itself
            return
        self._tick = loop.call_later(_TICK, self._alive)

    def _start_pending(self) -> None:
        self._start_scheduled = False
        self._start_more()

    def _start_more(self) -> None:
        """Start waiting jobs while fewer than ``async_concurrency`` run, in one driver task (on the loop)."""
        jobs: deque[Job] = deque()
        self._take_pending(jobs)
        if jobs:
            self._drive_in_a_task(jobs)

    def _take_pending(self, jobs: deque[Job]) -> None:
        """Move waiting jobs into ``jobs`` while the bound allows, counting them as running."""
        pending, limit = self._pending, self._limit
        while pending and self._running < limit:
            job = pending.popleft()
            if job.cancelled:
                self._finish(job, GIVEN_BACK, ran=False)
                continue
            jobs.append(job)
            self._running += 1

    def _drive_in_a_task(self, jobs: deque[Job]) -> None:
        assert self._loop is not None
        task = self._driver(self._drive(jobs), jobs[0].spec.name)
        for job in jobs:
            job.task = task

    async def _drive(self, jobs: deque[Job]) -> None:
        """Run jobs in turn in this task until one awaits: that one keeps the task, the rest get a new one.

        A task per consumer costs about 4 µs (its creation, its scheduling,
        a turn of the loop): as much as the whole of a plain consumer's way.
        Most trivial coroutines never suspend, so each job's first step runs
        here at once, as Python 3.12's eager tasks do; only a job that
        awaits costs a task, and keeps this one for the rest of its life, so
        that ``asyncio.current_task()`` is the same object throughout (what
        ``asyncio.timeout`` and cancel scopes bind to). Each job runs in a
        context of its own, as a task's would: what one consumer sets in a
        ContextVar no other sees.
        """
        task = jobs[0].task
        assert task is not None
        copy_context, cancelled_error = contextvars.copy_context, _cancelled()
        self._driving = True
        while jobs or self._pending:
            if not jobs:
                # Take on what waits, as the bound allows: no task to make for it.
                self._take_pending(jobs)
                if not jobs:
                    break
                for job in jobs:
                    job.task = task
            job = jobs.popleft()
            if job.cancelled:
                self._finish(job, GIVEN_BACK)
                continue
            started = time.perf_counter()
            context = copy_context()
            outcome: Any = None
            suspended = False
            try:
                coroutine = job.spec.invoke(job.event.payload, job.event)
                awaited = context.run(coroutine.send, None)
                suspended = True
            except StopIteration:
                pass
            except BaseException as error:  # anything a consumer raises is its failure
                outcome = error
            if suspended:
                # It awaits: this task is its own from now on; the rest
                # (and what waits, room allowing) go on in another.
                if not jobs:
                    self._take_pending(jobs)
                if jobs:
                    self._drive_in_a_task(jobs)
                    jobs = deque()
                task.set_name(job.spec.name)
                self._driving = False
                try:
                    await _resume(coroutine, awaited, context)
                except cancelled_error as error:
                    # Cancelled by shutdown: given back, not a failure.
                    # Cancelled from within (a library cancelling the task):
                    # the consumer's failure, retried as any other.
                    outcome = GIVEN_BACK if job.cancelled else error
                except BaseException as error:
                    outcome = error
                job.duration = time.perf_counter() - started
                self._finish(job, outcome)
                return
            elif sys.version_info >= (3, 11) and task.cancelling():
                # It cancelled its own task and returned: that request was
                # for it, not for the next consumer in this task.
                task.uncancel()
            job.duration = time.perf_counter() - started
            self._finish(job, outcome)
        self._driving = False

    def _finish(self, job: Job, outcome: Any, *, ran: bool = True) -> None:
        if job.done:
            return
        job.done = True
        job.outcome = outcome
        self._finished.append(job)
        if ran:
            self._running -= 1
            if self._pending and not self._driving:
                # (A driver running takes on what waits itself.)
                self._start_more()
        if not self._wake_scheduled and not self._passing:
            # One wake-up of the settler for everything finished in this
            # turn of the loop. (What finishes in a worker's pass is that
            # worker's to settle.)
            self._wake_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._wake_settler)

    def _wake_settler(self) -> None:
        self._wake_scheduled = False
        if self._waiting_for_room and len(self._pending) < self._waiting:
            with self._settled:
                self._settled.notify_all()
        self._wake.set()

    # -- the settler's side --------------------------------------------------

    def _run_settler(self) -> None:
        wake, finished = self._wake, self._finished
        while True:
            wake.wait(_TICK * 2)
            wake.clear()
            batch: list[Job] = []
            while finished:
                batch.append(finished.popleft())
            if batch:
                kept = [job for job in batch if not job.abandoned]
                try:
                    if kept:
                        self._settle(kept)
                except Exception:
                    logger.exception("recording the outcomes of %d async consumers failed", len(kept))
                with self._settled:
                    self._jobs.difference_update(batch)
                    self._settled.notify_all()
            elif self._ended:
                return
            self._watch_loop()

    def _watch_loop(self) -> None:
        """Warn, once per consumer, of one that keeps the loop busy past :data:`BLOCKING` seconds."""
        runner = self._runner
        stalled = time.monotonic() - self._alive_at
        if stalled < BLOCKING + _TICK or runner is None or not self._jobs or self._ended:
            return
        frame = sys._current_frames().get(runner)
        codes = self._codes
        while frame is not None:
            name = codes.get(frame.f_code)
            if name is not None:
                if name not in self._warned:
                    self._warned.add(name)
                    logger.warning(
                        "async consumer %s has blocked the event loop for %.2fs: a blocking call "
                        "in async code (time.sleep, a sync client, long CPU work) makes every other "
                        "async consumer wait. Await an async form, move the call into `await "
                        "asyncio.to_thread(...)`, or make the consumer a plain def (it then runs on "
                        "a worker thread). Said once per consumer.", name, stalled)
                return
            frame = frame.f_back

    # -- stopping --------------------------------------------------------------

    def stop(self, timeout: float) -> tuple[int, int]:
        """Wait up to ``timeout`` for the jobs in flight; cancel the rest (given back); end the threads.

        Returns how many jobs were cancelled, and how many of those ignored
        the cancellation for a second (left behind).
        """
        self._closing = True
        loop = self._loop
        stuck = 0
        if loop is None:
            self._ended = True
            return 0, 0
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._jobs and (left := deadline - time.monotonic()) > 0:
                self._settled.wait(min(left, 0.05))
            cancelled = [job for job in self._jobs if not job.abandoned]
        if cancelled:
            self._cancel(loop, cancelled)
            # A cancelled coroutine ends at its next await; one that ignores
            # cancellation is left behind after a second more.
            end = time.monotonic() + 1.0
            with self._lock:
                while self._jobs and (left := end - time.monotonic()) > 0:
                    self._settled.wait(min(left, 0.05))
                stuck = len(self._jobs)
        self._end(loop)
        return len(cancelled), stuck

    def abandon(self) -> list[Delivery]:
        """A stop that cannot wait: cancel every job, and return their deliveries to give back now."""
        self._closing = True
        with self._lock:
            jobs = [job for job in self._jobs if not job.abandoned]
            for job in jobs:
                job.abandoned = True
        if self._loop is not None and jobs:
            self._cancel(self._loop, jobs)
        return [job.delivery for job in jobs]

    def _cancel(self, loop: asyncio.AbstractEventLoop, jobs: Sequence[Job]) -> None:
        finish = self._finish

        def given_back(job: Job, _: object) -> None:
            finish(job, GIVEN_BACK)

        def cancel() -> None:
            for job in jobs:
                job.cancelled = True
                task = job.task
                if task is not None and not job.done:
                    task.cancel()
                    # A task cancelled before its first step never runs
                    # _run: its job is finished here.
                    task.add_done_callback(functools.partial(given_back, job))

        with contextlib.suppress(RuntimeError):  # closed already
            loop.call_soon_threadsafe(cancel)
        self._wanted.set()

    def _end(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ended = True
        self._wake.set()
        if self._settler is not None:
            self._settler.join(5.0)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        self._wanted.set()
        if self._loop_thread is not None:
            self._loop_thread.join(5.0)


@types.coroutine
def _resume(coroutine: Any, awaited: Any, context: contextvars.Context) -> Generator[Any, Any, Any]:
    """Await the rest of a coroutine whose first step ran already, each step in its own context.

    What ``await`` does, from where the coroutine stopped: what it awaits
    goes up to the task, what the task sends or throws (a cancellation)
    goes down to it.
    """
    send, throw = coroutine.send, coroutine.throw
    while True:
        try:
            sent = yield awaited
        except BaseException as error:  # thrown in by the task: a cancellation
            try:
                awaited = context.run(throw, error)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                awaited = context.run(send, sent)
            except StopIteration as stop:
                return stop.value


def _cancelled() -> type[BaseException]:
    import asyncio

    return asyncio.CancelledError


# -- the inline executor --------------------------------------------------------

_inline = threading.local()


def _forget_inline_loop() -> None:
    # A forked child must not run the parent's loop: its selector and
    # self-pipe are the parent's too.
    global _inline
    _inline = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inline_loop)


def check_no_running_loop(spec: ConsumerSpec) -> None:
    """Raise when a sync ``emit`` must run ``spec`` inline in a thread whose event loop runs."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"emit() was called inside a running event loop, and the inline executor cannot run the "
        f"async consumer {spec.name} to completion there without blocking that loop: use "
        "`await rocketman.emit_async(...)` in async code (or emit_many_async)")


def run_inline(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion in this thread, on a loop the thread keeps for the next ones.

    The same loop every time, so that what a consumer keeps between events
    (a client, a pool) stays on the loop it was made on.
    """
    import asyncio

    loop = getattr(_inline, "loop", None)
    if loop is None or loop.is_closed():
        import atexit

        loop = _inline.loop = asyncio.new_event_loop()
        atexit.register(loop.close)
    return loop.run_until_complete(coroutine)
