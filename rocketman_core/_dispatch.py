"""The worker loop: reserve a batch, dispatch each event, retry or dead-letter, acknowledge.

:class:`WorkerLoop` is built by the runtime when its workers start, from
what it needs: the storage and its features, the consumers, the settings,
the hooks and the hosting of subscriptions; the executor runs its
:meth:`~WorkerLoop.run` on each worker. It is the hot path: every line here
runs once per event. :func:`dispatch_inline` is the ``inline`` executor's
path, in the emitting thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._async import GIVEN_BACK, Job, check_no_running_loop, run_inline
from ._backends import StorageFeatures
from ._config import Settings
from ._consumers import Consumers, ConsumerSpec
from ._contracts import Delivery, Storage
from ._envelope import (
    Event,
    MalformedMessage,
    decode,
    encode_event,
    payload_from_text,
    payload_text,
)
from ._hooks import Hooks
from ._text import plural
from ._urls import mask_url

if TYPE_CHECKING:
    import asyncio

    from ._async import AsyncRunner
    from ._hosting import Hosting

__all__ = ["Idle", "Outage", "WorkerLoop", "dispatch_inline", "dispatch_inline_async", "one_line"]

logger = logging.getLogger("rocketman")

_STORAGE_RETRY_MAX = 5.0  # seconds between attempts while the storage is down


def one_line(error: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


class Outage:
    """The storage's failures, as all workers of a process see them: one line when it starts, one when it ends.

    Every worker backs off and tries again by itself; only the first
    failure of an outage is logged (ERROR), and its end (WARNING, with how
    long it lasted and how many attempts failed). The rest is at DEBUG.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = False
        self._since = 0.0
        self._failures = 0

    def failed(self, error: BaseException) -> float:
        """Count a failed attempt; return how long this worker waits before the next."""
        import random

        detail = mask_url(str(error)) or type(error).__name__
        with self._lock:
            self._failures += 1
            first = not self.down
            if first:
                self.down, self._since, self._failures = True, time.monotonic(), 1
            failures = self._failures
        if first:
            logger.error("the storage failed to give work (%s); every worker retries until it is "
                         "back, and nothing it keeps is lost", detail)
        else:
            logger.debug("the storage still fails (%s)", detail)
        wait: float = min(_STORAGE_RETRY_MAX, 0.1 * 2 ** min(failures, 6))
        return wait * random.uniform(0.5, 1.0)

    def recovered(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
            lasted, failures = time.monotonic() - self._since, self._failures
        logger.warning("the storage gives work again, after %.1fs and %d failed attempts",
                       lasted, failures)


class Idle:
    """Where :meth:`Rocketman.drain` waits: the workers ring it after each batch, when someone waits.

    A bare lock used as a bell (held at rest; a worker releases it, a drain
    takes it again), not a Condition: Ctrl-C in a drain must leave nothing
    half done. A KeyboardInterrupt raised inside a Python-level ``with``
    could leave a Condition's lock taken, or make its exit release a lock it
    never took (a RuntimeError in place of the interrupt, and then the exit
    drained for the whole shutdown_timeout). A lock's own acquire and
    release are atomic.
    """

    __slots__ = ("_bell", "waiting")

    def __init__(self) -> None:
        self._bell = threading.Lock()
        self._bell.acquire()
        #: How many drain() calls wait now, kept without a lock (an update
        #: lost to a race only makes a worker ring for nothing, or a drain
        #: wait for its poll interval).
        self.waiting = 0

    def notify(self) -> None:
        """Wake a drain() waiting now (a no-op when none is)."""
        if self.waiting:
            with contextlib.suppress(RuntimeError):  # rung already, not yet answered
                self._bell.release()

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a worker's :meth:`notify`; the bell is held again after."""
        self._bell.acquire(timeout=timeout)


class WorkerLoop:
    """The workers of one started runtime: each reserves a batch for the hosted subscriptions, dispatches, acknowledges.

    Thread-safe: every worker runs :meth:`run` on the same object. What each
    holds is in :attr:`held` (renewed by the heartbeat, given back by a stop
    that cannot wait).
    """

    def __init__(self, storage: Storage, features: StorageFeatures, consumers: Consumers,
                 settings: Settings, hooks: Hooks, hosting: Hosting, idle: Idle, *,
                 debug: bool = False,
                 new_loop: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        self.storage = storage
        self.features = features
        self.consumers = consumers
        self.settings = settings
        self.hooks = hooks
        self.hosting = hosting
        self.idle = idle
        self.debug = debug
        #: The deliveries each worker (by thread id) holds now.
        self.held: dict[int, Sequence[Delivery]] = {}
        #: The storage's failures as this process's workers see them.
        self.outage = Outage()
        #: Where async consumers run; made at the first one's event.
        self.runner: AsyncRunner | None = None
        self._new_loop = new_loop
        self._runner_lock = threading.Lock()

    def held_deliveries(self) -> list[Delivery]:
        """Every delivery the workers hold now, those of async consumers in flight included."""
        held = [delivery for batch in list(self.held.values()) for delivery in batch]
        runner = self.runner
        if runner is not None and runner.in_flight:
            held += runner.deliveries()
        return held

    def give_back_held(self) -> int:
        """Give back, now, every delivery the workers hold (a stop that cannot wait); return how many."""
        runner = self.runner
        abandoned = runner.abandon() if runner is not None else []
        held = [delivery for batch in list(self.held.values()) for delivery in batch] + abandoned
        if self.features.release is not None and held:
            self._give_back(held, "event")
        return len(held)

    def stop_async(self, timeout: float, waited: float) -> int:
        """Wait up to ``timeout`` for the async consumers in flight, cancel the rest; return how many were.

        The cancelled ones' deliveries are given back (a durable storage
        keeps them for the next worker; a memory one counts them as left).
        ``waited``: how long the shutdown gave them in all, for the log line.
        """
        runner = self.runner
        if runner is None:
            return 0
        cancelled, stuck = runner.stop(timeout)
        if cancelled:
            logger.warning(
                "shutdown cancelled %s still running after %.1fs; their events were given back, "
                "not failed%s (raise shutdown_timeout to give them more time)",
                plural(cancelled, "async consumer"), waited,
                f"; {stuck} ignored the cancellation and were left running" if stuck else "")
        return cancelled

    def _runner(self) -> AsyncRunner:
        with self._runner_lock:
            if self.runner is None:
                from ._async import AsyncRunner

                settings = self.settings
                self.runner = AsyncRunner(self._new_loop or _asyncio_loop,
                                          settings.async_concurrency, self.settle,
                                          waiting=settings.worker_count * settings.batch_size)
            return self.runner

    def run(self, stopping: threading.Event) -> None:
        """One worker: reserve a batch for the hosted subscriptions, dispatch each, acknowledge; until ``stopping``."""
        storage, hosting, idle = self.storage, self.hosting, self.idle
        latency, batch_size = self.settings.latency, self.settings.batch_size
        piggyback = self.features.ack_and_reserve
        me = threading.get_ident()
        outage = self.outage
        # What the last batch handled, to acknowledge with the next reserve
        # when the storage can do both in one round trip.
        done: Sequence[Delivery] = ()
        try:
            while not stopping.is_set():
                hosted = hosting.hosted
                if not hosted:
                    done = self._ack(done)
                    hosting.wait_for_consumers(latency)
                    continue
                deliveries: Sequence[Delivery]
                try:
                    if done and piggyback is not None:
                        deliveries = piggyback(done, hosted, latency, batch_size)
                        done = ()
                        idle.notify()
                    else:
                        deliveries = storage.reserve(hosted, latency, batch_size)
                except Exception as error:
                    stopping.wait(outage.failed(error))
                    continue
                if outage.down:
                    outage.recovered()
                if not deliveries:
                    continue
                self.held[me] = deliveries
                try:
                    done = self.run_batch(deliveries, stopping, defer_ack=piggyback is not None)
                finally:
                    self.held.pop(me, None)
                if not done:
                    idle.notify()
        finally:
            self._ack(done)
            idle.notify()

    def _ack(self, done: Sequence[Delivery]) -> Sequence[Delivery]:
        """Acknowledge ``done`` now (a failure is logged: they are delivered again); return ``()``."""
        if done:
            try:
                self.storage.ack(done)
            except Exception as error:
                logger.error("could not acknowledge %s (delivered again): %s",
                             plural(len(done), "message"), mask_url(str(error)))
        return ()

    def run_batch(self, deliveries: Sequence[Delivery], stopping: threading.Event, *,
                  defer_ack: bool = False) -> Sequence[Delivery]:
        """Dispatch a reserved batch, acknowledge what succeeded, give back what was not started.

        With ``defer_ack``, what succeeded is returned instead, for the next
        ``ack_and_reserve`` (unless the batch ended by an exception: then it
        is acknowledged here, now). A consumer's ``KeyboardInterrupt`` (or
        another BaseException that is not a failure) stops this worker: the
        rest of the batch, the interrupted delivery included, goes back
        before it propagates.
        """
        release = self.features.release
        done: list[Delivery] = []
        # The async consumers' deliveries, handed to the loop together after the batch.
        jobs: list[Job] = []
        index = 0
        finished = False
        try:
            for index, delivery in enumerate(deliveries):
                if index and release is not None and stopping.is_set():
                    # Stopping: give back what this worker has not started,
                    # rather than make the stop wait for a whole batch.
                    self._give_back(deliveries[index:])
                    index = len(deliveries)
                    break
                try:
                    if self.handle(delivery, stopping, jobs):
                        done.append(delivery)
                except Exception as error:
                    self._not_recorded(delivery, error)
            else:
                index = len(deliveries)
            if jobs:
                runner = self.runner or self._runner()
                rejected = runner.submit(jobs, stopping)
                jobs = []
                self._give_back([job.delivery for job in rejected])  # stopping: not started
                # What finished while this worker ran the loop: its to record,
                # the successes acknowledged with the batch's.
                if settled := runner.take_finished():
                    try:
                        done += self._outcomes(settled)
                    finally:
                        runner.settled(settled)
            finished = True
        except BaseException:
            if release is not None:
                self._give_back([job.delivery for job in jobs] + list(deliveries[index:]))
            raise
        finally:
            if not (defer_ack and finished):
                self._ack(done)
        return done if defer_ack else ()

    def _not_recorded(self, delivery: Delivery, error: Exception) -> None:
        """The storage failed while recording a retry or a dead letter.

        A durable storage's lease gives the delivery back (at least once); a
        memory one must be given it back now, or it stays reserved for ever.
        """
        durable = self.features.durable
        kept = "it comes back when its lease expires" if durable else "it is given back"
        logger.error("could not record the outcome of a message (%s); %s",
                     mask_url(str(error)) or type(error).__name__, kept)
        if not durable:
            self._give_back([delivery])

    def _give_back(self, deliveries: Sequence[Delivery], noun: str = "message") -> None:
        release = self.features.release
        if not deliveries or release is None:
            return
        try:
            release(deliveries)
        except Exception as error:
            logger.warning("could not give back %s (their lease will): %s",
                           plural(len(deliveries), noun), mask_url(str(error)))

    def handle(self, delivery: Delivery, stopping: threading.Event | None = None,
               jobs: list[Job] | None = None) -> bool:
        """Dispatch one delivery to its subscription's consumer.

        Returns True when it is to be acknowledged (the consumer succeeded),
        False when the storage already took it back (a retry, a dead letter)
        or it goes to the loop of async consumers, which settles it: added
        to ``jobs`` for the caller to submit, or submitted now.
        """
        storage, hooks = self.storage, self.hooks
        message = delivery.message
        try:
            event = decode(message)
        except MalformedMessage as error:
            reason = f"malformed message: {error}"
            logger.warning("dead-lettering a malformed message of %s: %s", delivery.subscription, error)
            storage.dead_letter(delivery, message, reason)
            if hooks.dead_lettered:
                hooks.event_dead_lettered(None, delivery.subscription, reason)
            return False
        spec = self.consumers.by_name.get(delivery.subscription)
        if spec is None:
            reason = (
                f"no consumer named {delivery.subscription} in the process that took it: its "
                "code was removed or renamed (give consumers a name= that stays), or the "
                "subscription is retired (`rocketman subscriptions remove`)"
            )
            logger.warning("dead-lettering %s (id %s): %s", event.name, event.id, reason)
            storage.dead_letter(delivery, message, reason)
            if hooks.dead_lettered:
                hooks.event_dead_lettered(event, delivery.subscription, reason)
            return False
        if self.debug:
            logger.debug("dispatching %s (id %s) to %s", event.name, event.id, spec.name)
        if spec.is_async:
            job = Job(delivery, event, spec)
            if jobs is not None:
                jobs.append(job)
            else:
                runner = self.runner or self._runner()
                if runner.submit([job], stopping):
                    self._give_back([delivery])  # stopping: it was not started
                if settled := runner.take_finished():
                    try:
                        self.settle(settled)
                    finally:
                        runner.settled(settled)
            return False
        timed = hooks.handled
        started = time.perf_counter() if timed else 0.0
        try:
            if (result := spec.invoke(event.payload, event)) is not None:
                _check_result(spec, result)
        except (Exception, SystemExit) as error:  # a consumer's sys.exit() is its failure, not ours
            self._failed(delivery, event, spec, error)
            return False
        if timed:
            hooks.event_handled(event, spec.name, time.perf_counter() - started)
        return True

    def settle(self, jobs: Sequence[Job]) -> None:
        """Record what async consumers did: ack the successes in one call, retry or dead-letter the failures.

        Runs on the runner's settler thread, never on the loop.
        """
        self._ack(self._outcomes(jobs))
        self.idle.notify()

    def _outcomes(self, jobs: Sequence[Job]) -> list[Delivery]:
        """Record what async consumers did but the successes: retry or dead-letter the failures, give back the cancelled; return the successes, to acknowledge."""
        hooks = self.hooks
        done: list[Delivery] = []
        back: list[Delivery] = []
        for job in jobs:
            if job.abandoned:
                continue
            outcome = job.outcome
            if outcome is None:
                done.append(job.delivery)
                if hooks.handled:
                    hooks.event_handled(job.event, job.spec.name, job.duration)
            elif outcome is GIVEN_BACK:
                back.append(job.delivery)
            else:
                try:
                    self._failed(job.delivery, job.event, job.spec, outcome)
                except Exception as error:
                    self._not_recorded(job.delivery, error)
        self._give_back(back)
        return done

    def _failed(self, delivery: Delivery, event: Event, spec: ConsumerSpec, error: BaseException) -> None:
        storage, hooks, settings = self.storage, self.hooks, self.settings
        attempt = event.attempt + 1
        retry = event.attempt < settings.max_retries
        try:
            message = encode_event(event, attempt=attempt, consumer=None)
        except (TypeError, ValueError) as unwritable:
            # Decoded, but not writable back (a number that overflowed to
            # infinity): keep the bytes as they came, never loop on them.
            reason = (f"{one_line(error)}; the retry cannot be written back as JSON "
                      f"({unwritable}), so the message is kept as it came\n\n{_traceback(error)}")
            logger.error("consumer %s failed on %s (id %s); its retry cannot be written back as "
                         "JSON: dead-lettered as it came", spec.name, event.name, event.id)
            storage.dead_letter(delivery, delivery.message, reason)
            if hooks.failed:
                hooks.event_failed(event, spec.name, error, False)
            return
        # One line per incident for people on call; the traceback is in the
        # dead letter, and at DEBUG.
        if retry:
            import random

            base = min(settings.retry_backoff_max, settings.retry_backoff * 2 ** event.attempt)
            delay = random.uniform(base / 2, base)
            logger.warning(
                "consumer %s failed on %s (id %s, attempt %d of %d): %s; retrying in %.2fs",
                spec.name, event.name, event.id, attempt, settings.max_retries + 1,
                one_line(error), delay,
            )
            logger.debug("consumer %s failed on %s (id %s)", spec.name, event.name, event.id,
                         exc_info=error)
            storage.retry_later(delivery, message, delay)
        else:
            reason = f"{one_line(error)}\n\n{_traceback(error)}"
            logger.error(
                "consumer %s failed on %s (id %s) %d times; dead-lettered: %s (`rocketman "
                "dead-letters list` shows the traceback)",
                spec.name, event.name, event.id, attempt, one_line(error),
            )
            logger.debug("consumer %s failed on %s (id %s) for the last time", spec.name,
                         event.name, event.id, exc_info=error)
            storage.dead_letter(delivery, message, reason)
        if hooks.failed:
            hooks.event_failed(event, spec.name, error, retry)
        if not retry and hooks.dead_lettered:
            hooks.event_dead_lettered(event, spec.name, str(error))


def _asyncio_loop() -> asyncio.AbstractEventLoop:
    import asyncio

    return asyncio.new_event_loop()


def _check_result(spec: ConsumerSpec, result: Any) -> None:
    import inspect

    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning: it is reported here
        raise TypeError(
            f"consumer {spec.name} returned an awaitable ({type(result).__name__}) without being "
            "an async def, so rocketman cannot run it: define it with `async def` (or keep "
            "inspect.iscoroutinefunction() true through its decorators, with functools.wraps)")


class _FirstError:
    """Inline dispatch: every consumer runs; the first error is raised at the end, the others logged."""

    __slots__ = ("first", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.first: BaseException | None = None

    def add(self, spec: ConsumerSpec, error: BaseException) -> None:
        if self.first is None:
            self.first = error
        else:
            logger.error("consumer %s failed on %s", spec.name, self.name, exc_info=error)

    def raise_first(self) -> None:
        if self.first is not None:
            raise self.first


def _inline_calls(consumers: Consumers, event_id: str, name: str, payload: Any, text: str | None,
                  debug: bool) -> list[tuple[ConsumerSpec, Any, Event]]:
    """What inline dispatch calls: each consumer of the event, with its own copy of the payload."""
    # Round-trip through JSON as a storage would: a consumer sees the same
    # payload inline as it will with memory or Redis.
    if text is None:
        text = payload_text(name, payload)
    emitted_at = time.time()
    calls = []
    for spec in consumers.for_name(name):
        # Each consumer its own copy, as each subscription decodes its own
        # delivery on a storage: one consumer's changes never reach another.
        mine = payload_from_text(text)
        if debug:
            logger.debug("dispatching %s (id %s) to %s", name, event_id, spec.name)
        calls.append((spec, mine, Event(event_id, name, mine, emitted_at)))
    return calls


def dispatch_inline(consumers: Consumers, event_id: str, name: str, payload: Any,
                    text: str | None = None, *, debug: bool = False) -> None:
    """Run every consumer of the event now, in this thread; ``text``: its payload already encoded.

    Every consumer runs; then the first error is raised to the caller (the
    others are logged), with no retry. An async consumer is run to
    completion on this thread's own loop; when an event loop already runs
    in this thread, nothing runs and a ``RuntimeError`` says to use
    ``emit_async``.
    """
    calls = _inline_calls(consumers, event_id, name, payload, text, debug)
    for spec, _, _ in calls:
        if spec.is_async:
            check_no_running_loop(spec)
            break
    errors = _FirstError(name)
    for spec, mine, event in calls:
        try:
            if spec.is_async:
                run_inline(spec.invoke(mine, event))
            elif (result := spec.invoke(mine, event)) is not None:
                _check_result(spec, result)
        except (Exception, SystemExit) as error:
            errors.add(spec, error)
    errors.raise_first()


async def dispatch_inline_async(consumers: Consumers, event_id: str, name: str, payload: Any,
                                text: str | None = None, *, debug: bool = False) -> None:
    """:func:`dispatch_inline` for ``emit_async``: async consumers are awaited on the caller's loop."""
    errors = _FirstError(name)
    for spec, mine, event in _inline_calls(consumers, event_id, name, payload, text, debug):
        try:
            result = spec.invoke(mine, event)
            if spec.is_async:
                await result
            elif result is not None:
                _check_result(spec, result)
        except (Exception, SystemExit) as error:
            errors.add(spec, error)
    errors.raise_first()
