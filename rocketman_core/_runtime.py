"""The runtime: emit, the worker loop, retries, dead letters, drain and shutdown."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._backends import (
    Durable,
    EventLoops,
    StorageFeatures,
    check_contract,
    check_storage,
    close_quietly,
    is_synchronous,
)
from ._config import Settings
from ._consumers import (
    Consumers,
    check_pattern,
    check_start,
    check_subscription_name,
    is_method_definition,
)
from ._contracts import Executor, Relay, Storage, SubscriptionInfo
from ._dead_letters import DeadLetterBook, DeadLetterRecord
from ._dispatch import Idle, WorkerLoop, dispatch_inline, dispatch_inline_async
from ._envelope import emitted_event, new_id, new_message, new_messages, payload_text, validate_name
from ._errors import BacklogFull, ConfigurationError
from ._hooks import Hooks
from ._plugins import Plugins
from ._text import plural
from ._urls import mask_url

if TYPE_CHECKING:
    from ._hosting import Hosting

__all__ = ["DeadLetterRecord", "Rocketman"]

logger = logging.getLogger("rocketman")

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

class _Unset:
    """The default of a setting not given: it then comes from ROCKETMAN_*, else its default."""

    def __repr__(self) -> str:
        return "<from ROCKETMAN_* or default>"


_UNSET: Any = _Unset()


class Rocketman:
    """One rocketman runtime: its settings, consumers, storage and workers.

    The module-level functions (``rocketman.emit``, ``rocketman.on_event``...)
    use the default runtime; tests make their own (see the ``rocketman_app``
    pytest fixture). Every method is thread-safe.

    It is made of parts, built when it starts (the first emit, :meth:`start`):
    the storage and its features (:mod:`._backends`), the :class:`Hosting` of
    its consumers' subscriptions, the :class:`WorkerLoop` the executor runs,
    the :class:`Hooks` of its plugins, and its :class:`DeadLetterBook`.
    """

    def __init__(self, *, plugins: Plugins | None = None) -> None:
        self.plugins = plugins if plugins is not None else Plugins()
        self.consumers = Consumers()
        self.consumers.listen(self._consumers_changed)
        self._settings: Settings | None = None
        self._debug = False
        self._interrupted = False  # Ctrl-C in drain(): the exit stops at once
        self._inherited_storage = False  # forked from a process that passed a memory storage object
        self._new_locks()
        self._reset_state()
        self._atexit_registered = False
        self._letters = DeadLetterBook(lambda: self.storage)
        _track_fork(self)

    def _new_locks(self) -> None:
        self._lock = threading.RLock()
        self._idle = Idle()

    def _reset_state(self) -> None:
        # What a start builds; shutdown() and a fork come back here.
        self._storage: Storage | None = None
        self._features = StorageFeatures(False, None, None, None, None)
        self._storage_owned = False
        self._executor: Executor | None = None
        self._relays: list[Relay] = []
        self._synchronous = False
        self._hooks = Hooks(self.plugins)
        self._hosting: Hosting | None = None
        self._worker: WorkerLoop | None = None

    # -- configuration -----------------------------------------------------

    def configure(
        self,
        *,
        storage: Any = _UNSET,
        executor: Any = _UNSET,
        relays: Iterable[Any] = _UNSET,
        worker_count: int = _UNSET,
        latency: float = _UNSET,
        debug: bool = _UNSET,
        max_retries: int = _UNSET,
        retry_backoff: float = _UNSET,
        retry_backoff_max: float = _UNSET,
        shutdown_timeout: float = _UNSET,
        batch_size: int = _UNSET,
        storage_options: dict[str, Any] = _UNSET,
        executor_options: dict[str, Any] = _UNSET,
        subscription_stale_after: float = _UNSET,
        subscription_expire_after: float = _UNSET,
        relay_backlog_bytes: int = _UNSET,
        async_concurrency: int = _UNSET,
    ) -> Settings:
        """Set how events are stored and run; unset settings come from ``ROCKETMAN_*``.

        Each call starts from the environment and the defaults again, with
        only the arguments it is given. Reconfiguring a running runtime shuts
        it down first (draining it). Returns the settings in force. Raises
        :class:`ConfigurationError` for a bad value or an unknown backend.
        """
        given = {
            key: value for key, value in locals().items()
            if key != "self" and value is not _UNSET
        }
        if "relays" in given:
            relays = given["relays"]
            if isinstance(relays, (str, bytes)) or _is_relay_pair(relays):
                relays = [relays]
            try:
                given["relays"] = tuple(relays)
            except TypeError:
                raise ConfigurationError(
                    f"relays must be a list of relay names, URLs, objects or (name, options) "
                    f"pairs, not {relays!r}") from None
        settings = Settings.resolve(given)
        self.plugins.load()
        # An unknown name, a bad option, or an object that is not a backend,
        # fails here, not at the first emit.
        self._check_backends(settings)
        with self._lock:
            if self._storage is not None:
                logger.info("rocketman reconfigured: shutting down the running runtime first")
                self.shutdown()
            self._settings = settings
            self._inherited_storage = False
            self._debug = settings.debug
        _apply_debug(settings.debug)
        return settings

    def _check_backends(self, settings: Settings | None = None) -> None:
        """Check every backend the settings select; raise :class:`ConfigurationError` naming a bad one.

        A backend selected by name or URL is built once and closed: only its
        factory knows its options (the factories connect to nothing, see
        ``Register``). That also imports the backends' own dependencies.
        """
        settings = settings or self.settings
        for kind, contract, specs in (
            ("storage", Storage, ((settings.storage, settings.storage_options),)),
            ("executor", Executor, ((settings.executor, settings.executor_options),)),
            ("relay", Relay, tuple(_relay_and_options(r) for r in settings.relays)),
        ):
            for spec, options in specs:
                if not isinstance(spec, str):
                    if kind == "storage":
                        check_storage(spec)
                    else:
                        check_contract(kind, spec, contract)
                    continue
                if kind == "relay":
                    spec = self._relay_spec(spec, settings)
                built = self._build(kind, spec, options)
                if kind == "storage":
                    name = spec.split("://", 1)[0].lower()
                    try:
                        check_storage(built, spec, self.plugins.backend("storage", name).plugin.origin)
                    except ConfigurationError:
                        close_quietly(built)
                        raise
                    close_quietly(built)

    @property
    def settings(self) -> Settings:
        """The settings in force (from the environment if never configured)."""
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    self._settings = Settings.resolve({})
                    self._debug = self._settings.debug
                    _apply_debug(self._debug)
        return self._settings

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object in code, without installing a distribution."""
        self.plugins.register(plugin, name)
        if self._storage is not None:
            self._hooks.refresh()

    # -- consumers ---------------------------------------------------------

    def on_event(
        self, pattern: str, *, name: str | None = None, start: str = "parked"
    ) -> Callable[[F], F]:
        """Register the decorated function for events named ``pattern``.

        ``pattern`` is an event name, or has ``*`` matching any characters
        (``"user.*"``, ``"*"``); decorating a function twice makes it listen
        to both. ``name`` is the consumer's subscription name in the storage
        (default ``module:qualname``): give one so that moving or renaming
        the function keeps its subscription. ``start="now"`` makes a new
        subscription skip the parked events (those emitted before any
        consumer matched them). On a method of a :class:`Consumer` subclass
        the method is registered when the class is defined.
        """
        # A bad argument fails at the decorator, not at the first event.
        check_pattern(pattern)
        check_start(start)
        if name is not None:
            check_subscription_name(name)

        def decorate(function: F) -> F:
            if is_method_definition(function):
                marks = function.__dict__.setdefault("__rocketman_events__", [])
                marks.append((pattern, name, start))
            else:
                self.consumers.add(pattern, function, name=name, start=start)
            return function

        return decorate

    # -- producing ---------------------------------------------------------

    def _relay_emit(self, name: str, payload: Any = None) -> str:
        """What relays emit through: :meth:`emit`, refused past ``relay_backlog_bytes``.

        A storage in this process's memory says how many bytes wait in it
        (``backlog_bytes()``); past the bound the relay gets
        :class:`BacklogFull` at once, and drops the message: waiting would
        only make its server disconnect it.
        """
        backlog = self._features.backlog_bytes
        if backlog is not None:
            limit = self.settings.relay_backlog_bytes
            if limit and backlog() >= limit:
                raise BacklogFull(
                    f"{_describe(self.settings.storage)} holds {backlog()} bytes of events, "
                    f"relay_backlog_bytes={limit}: consumers are slower than what relays "
                    "receive. Add workers, raise relay_backlog_bytes, or use a durable storage")
        return self.emit(name, payload)

    def emit(self, name: str, payload: Any = None) -> str:
        """Emit the event ``name`` with a JSON ``payload``; return the event's id.

        Returns once the storage holds the event (with ``inline``, once every
        consumer ran). Raises ``ValueError`` for an invalid name, ``TypeError``
        for a payload JSON cannot carry, and the storage's error when it
        cannot take the event.
        """
        storage = self._storage
        if storage is None:
            storage = self._prepare()
        if self._synchronous:
            validate_name(name)
            event_id = new_id()
            dispatch_inline(self.consumers, event_id, name, payload, debug=self._debug)
        else:
            event_id, message = new_message(name, payload)
            storage.push(name, message)
        if self._hooks.emitted or self._debug:
            self._emitted(event_id, name, payload)
        return event_id

    def _emitted(self, event_id: str, name: str, payload: Any) -> None:
        """Tell the hooks (and the debug log) of an event stored."""
        if self._hooks.emitted:
            self._hooks.event_emitted(emitted_event(event_id, name, payload, time.time()))
        if self._debug:
            logger.debug("emitted %s (id %s)", name, event_id)

    async def emit_async(self, name: str, payload: Any = None) -> str:
        """:meth:`emit` for async code: ``await`` it; it never blocks the event loop.

        On a storage with an async path (Redis: redis.asyncio; memory: a
        push that never waits) it is awaited in this loop; on another, its
        ``push`` runs on a thread. With ``inline``, every consumer runs
        before it returns, async ones awaited here. Same errors as :meth:`emit`.
        """
        storage = self._storage
        if storage is None:
            storage = await _on_a_thread(self._prepare)
        if self._synchronous:
            validate_name(name)
            event_id = new_id()
            await dispatch_inline_async(self.consumers, event_id, name, payload, debug=self._debug)
        else:
            event_id, message = new_message(name, payload)
            push = self._features.push_async
            if push is not None:
                await push(name, message)
            else:
                await _on_a_thread(storage.push, name, message)
        if self._hooks.emitted or self._debug:
            self._emitted(event_id, name, payload)
        return event_id

    def emit_many(self, events: Iterable[tuple[str, Any]]) -> list[str]:
        """Emit several ``(name, payload)`` events in as few storage round trips as it can.

        Every event is validated and encoded before any is stored, so one bad
        payload emits none. Returns the ids in order.
        """
        storage = self._storage
        if storage is None:
            storage = self._prepare()
        pairs = [(validate_name(name), payload) for name, payload in events]
        if self._synchronous:
            # Every payload encoded before any consumer runs: one bad payload
            # emits none, inline as with a storage.
            texts = [payload_text(name, payload) for name, payload in pairs]
            ids = [new_id() for _ in pairs]
            for event_id, (name, payload), text in zip(ids, pairs, texts, strict=True):
                dispatch_inline(self.consumers, event_id, name, payload, text, debug=self._debug)
        else:
            ids, messages = new_messages(pairs)
            storage.push_many(messages)
        self._emitted_many(ids, pairs)
        return ids

    def _emitted_many(self, ids: list[str], pairs: list[tuple[str, Any]]) -> None:
        hooks = self._hooks
        if hooks.emitted:
            now = time.time()
            for event_id, (name, payload) in zip(ids, pairs, strict=True):
                hooks.event_emitted(emitted_event(event_id, name, payload, now))

    async def emit_many_async(self, events: Iterable[tuple[str, Any]]) -> list[str]:
        """:meth:`emit_many` for async code: ``await`` it; it never blocks the event loop."""
        storage = self._storage
        if storage is None:
            storage = await _on_a_thread(self._prepare)
        pairs = [(validate_name(name), payload) for name, payload in events]
        if self._synchronous:
            texts = [payload_text(name, payload) for name, payload in pairs]
            ids = [new_id() for _ in pairs]
            for event_id, (name, payload), text in zip(ids, pairs, texts, strict=True):
                await dispatch_inline_async(self.consumers, event_id, name, payload, text,
                                            debug=self._debug)
        else:
            ids, messages = new_messages(pairs)
            push_many = self._features.push_many_async
            if push_many is not None:
                await push_many(messages)
            else:
                await _on_a_thread(storage.push_many, messages)
        self._emitted_many(ids, pairs)
        return ids

    # -- lifecycle ---------------------------------------------------------

    def _prepare(self) -> Storage:
        """Build the storage and executor, and start the workers (once)."""
        with self._lock:
            if self._storage is not None:
                return self._storage
            settings = self.settings
            if self._inherited_storage:
                raise ConfigurationError(
                    f"this process was forked from one configured with the storage object "
                    f"{settings.storage!r}, which holds the parent's events: the child would "
                    "handle them a second time. Configure a storage by name or URL (each process "
                    "then builds its own), or call rocketman.configure() again in the child"
                )
            self.plugins.load()
            storage: Storage = self._build("storage", settings.storage, settings.storage_options)
            if isinstance(settings.storage, str):
                name = settings.storage.split("://", 1)[0].lower()
                try:
                    features = check_storage(storage, settings.storage,
                                             self.plugins.backend("storage", name).plugin.origin)
                except ConfigurationError:
                    close_quietly(storage)
                    raise
            else:
                features = check_storage(storage)
            executor = self._build("executor", settings.executor, settings.executor_options)
            self._storage_owned = isinstance(settings.storage, str)
            self._features = features
            self._executor = executor
            self._synchronous = is_synchronous(executor)
            self._hooks.refresh()
            if not self._atexit_registered:
                atexit.register(_shutdown_at_exit, weakref.ref(self))
                self._atexit_registered = True
                _watch_interrupts()
            if settings.worker_count > 0 and not self._synchronous:
                from ._hosting import Hosting  # only a runtime that hosts consumers pays for it

                hosting = Hosting(storage, features, self.consumers, settings, self._lock)
                worker = WorkerLoop(
                    storage, features, self.consumers, settings, self._hooks, hosting, self._idle,
                    debug=self._debug,
                    new_loop=executor.new_event_loop if isinstance(executor, EventLoops) else None)
                self._hosting, self._worker = hosting, worker
                # Register the subscriptions before the first emit returns,
                # so that a monolith's own events reach its own consumers.
                hosting.host()
                executor.start(worker.run, settings.worker_count)
                hosting.start_heartbeat(worker.held_deliveries)
            logger.info(
                "rocketman ready: storage %s, executor %s, %s",
                _describe(settings.storage), _describe(settings.executor),
                plural(0 if self._synchronous else settings.worker_count, "worker"),
            )
            self._storage = storage
            return storage

    def _build(self, kind: str, spec: Any, options: Any) -> Any:
        if not isinstance(spec, str):
            return spec
        return self.plugins.build(kind, spec, dict(options))

    def start(self) -> None:
        """Start the workers and the configured relays now, rather than at the first emit."""
        self._prepare()
        with self._lock:
            if self._relays or not self.settings.relays:
                return
            for entry in self.settings.relays:
                spec, options = _relay_and_options(entry)
                relay = self._build("relay", self._relay_spec(spec), options)
                relay.start(self._relay_emit)
                self._relays.append(relay)
                logger.info("relay %s started", _describe(spec))

    def _relay_spec(self, spec: Any, settings: Settings | None = None) -> Any:
        """A relay named alone takes the storage's address when the storage is a URL of its scheme.

        ``--storage redis://host:6380/0 --relay redis`` listens on that
        server, not on the relay's default one: the same server, said once.
        """
        storage = (settings or self.settings).storage
        if not isinstance(spec, str) or "://" in spec or not isinstance(storage, str):
            return spec
        if "://" not in storage:
            return spec
        scheme = storage.split("://", 1)[0].lower()
        try:
            same = self.plugins.backend("relay", spec.lower()) is self.plugins.backend("relay", scheme)
        except Exception:  # the storage's scheme names no relay
            return spec
        return storage.split("?", 1)[0] if same else spec

    @property
    def storage(self) -> Storage:
        """The storage this runtime uses: the one it built from the settings, or the object given.

        Reading it starts the runtime as the first emit would (the workers
        too, when ``worker_count`` is above 0), so that it is the storage
        events go to.
        """
        return self._storage or self._prepare()

    def _give_back_held(self) -> int:
        """Give back, now, every delivery the workers hold (a stop that cannot wait); return how many."""
        worker = self._worker
        return worker.give_back_held() if worker is not None else 0

    def _consumers_changed(self, names: tuple[str, ...] | None) -> None:
        hosting = self._hosting
        if hosting is not None:
            hosting.consumers_changed(names)

    def drain(self, timeout: float | None = None) -> bool:
        """Block until every event stored so far is handled by each of its consumers.

        Handled means done, or dead-lettered; retries waiting for their delay
        are waited for. Returns True when the storage is empty of queued,
        reserved and delayed events, False when ``timeout`` passed first.
        """
        storage = self._storage
        if storage is None or self._synchronous:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        idle = self._idle
        try:
            idle.waiting += 1
            try:
                while True:
                    if not _pending(storage.stats()):
                        return True
                    wait = 0.05
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                        if wait <= 0:
                            return False
                    # Woken by a worker after each batch; the bound covers
                    # workers in other processes and retries falling due.
                    idle.wait(wait)
            finally:
                idle.waiting -= 1
        except KeyboardInterrupt:
            # Ctrl-C while waiting: the user wants out now, so the exit's
            # shutdown does not drain again for shutdown_timeout.
            self._interrupted = True
            raise

    async def drain_async(self, timeout: float | None = None) -> bool:
        """:meth:`drain` for async code: ``await`` it; the loop goes on meanwhile.

        A storage in this process's memory is asked on the loop; another
        (Redis) on a thread, so that the loop never waits for a server.
        """
        storage = self._storage
        if storage is None or self._synchronous:
            return True
        import asyncio

        in_memory = self._features.backlog_bytes is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stats = storage.stats() if in_memory else await _on_a_thread(storage.stats)
            if not _pending(stats):
                return True
            wait = 0.01 if in_memory else 0.05
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return False
            await asyncio.sleep(wait)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop the relays, drain the queue for up to ``timeout``, stop the workers.

        ``timeout`` defaults to the ``shutdown_timeout`` setting. What is left
        in a memory storage is counted in a WARNING; a durable storage keeps
        it. Returns True when everything was handled. A later emit starts a
        fresh runtime. Also runs at interpreter exit.
        """
        with self._lock:
            storage = self._storage
            if storage is None:
                return True
            settings = self.settings
            timeout = settings.shutdown_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout
            for relay in self._relays:
                try:
                    relay.stop(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:
                    logger.exception("relay %r failed to stop", relay)
            drained = True
            features, hosting = self._features, self._hosting
            durable = features.durable
            if self._worker is not None and not durable:
                # A memory queue dies with the process: give the workers time
                # to finish it. A durable storage keeps what is queued for the
                # next worker, so stop taking work now.
                drained = self.drain(timeout=max(0.0, deadline - time.monotonic()))
            if self._executor is not None:
                # Tell the workers to stop before waking them: a worker woken
                # first would start a new wait of `latency` seconds.
                self._executor.stop(timeout=0)
                if hosting is not None:
                    hosting.wake()
                if features.interrupt is not None:
                    features.interrupt()
                stopped = self._executor.stop(timeout=max(0.1, deadline - time.monotonic()))
                if not stopped:
                    logger.warning("some rocketman workers did not stop within %.1fs", timeout)
            if self._worker is not None:
                # The async consumers in flight get what is left of the
                # timeout; then they are cancelled, and their events given back.
                self._worker.stop_async(max(0.0, deadline - time.monotonic()), timeout)
            if hosting is not None:
                hosting.stop()
            closed = False
            if self._storage_owned and not durable:
                # Close first, then count: a memory storage refuses pushes and
                # keeps its counts in one step, so an event emitted meanwhile
                # is either counted below or refused to its emitter.
                closed = self._close(storage)
            try:
                left = storage.stats()
            except Exception as error:
                logger.warning("could not count what is left in the storage: %s", mask_url(str(error)))
                left = {}
            pending = sum(left.get(k, 0) for k in ("queued", "reserved", "delayed"))
            if pending:
                if durable:
                    logger.info(
                        "rocketman stopped; %s left in the storage for the next worker "
                        "(queued %d, reserved %d, delayed %d)",
                        plural(pending, "event"), left.get("queued", 0), left.get("reserved", 0), left.get("delayed", 0),
                    )
                else:
                    logger.warning(
                        "rocketman stopped with %s not handled, now lost: queued %d, "
                        "reserved %d, delayed %d (raise shutdown_timeout to give them more time, "
                        "or use a durable storage)",
                        plural(pending, "event"), left.get("queued", 0), left.get("reserved", 0), left.get("delayed", 0),
                    )
            if self._storage_owned and not closed:
                self._close(storage)
            self._reset_state()
            return drained and not pending

    @staticmethod
    def _close(storage: Storage) -> bool:
        try:
            storage.close()
        except Exception:
            logger.exception("the storage failed to close")
        return True

    # -- stats -------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The storage's totals over every subscription: queued, reserved, delayed, dead, parked, dropped."""
        return self.storage.stats()

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subscription in the storage, with its patterns, backlog and hosts."""
        return self.storage.subscriptions()

    def remove_subscription(self, name: str) -> bool:
        """Retire the subscription ``name`` with its backlog; return whether it existed.

        Events emitted afterwards no longer reach it. A process that still
        hosts it registers it again at its next keep-alive: stop those first.
        """
        return self.storage.unsubscribe(name)

    # -- dead letters --------------------------------------------------------

    def dead_letters(
        self, *, event: str | None = None, consumer: str | None = None, limit: int | None = None
    ) -> list[DeadLetterRecord]:
        """List dead letters, oldest first, filtered by event name and consumer.

        ``event`` and ``consumer`` may use ``*`` patterns; ``consumer`` matches
        the consumer's name (its subscription: ``module:qualname`` unless it
        was given a ``name=``).
        """
        return self._letters.records(event=event, consumer=consumer, limit=limit)

    def replay_dead_letters(
        self, *, event: str | None = None, consumer: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> int:
        """Put dead letters back in the queue, with their attempts reset.

        Without arguments, replays all of them. Each goes back to the
        subscription it was for, and only to it. Malformed messages are not
        replayed (they would fail again); purge them. A letter that cannot be
        replayed (its payload cannot be written back as JSON, its
        subscription no longer exists) stays, and is reported in a WARNING;
        the others are replayed. Returns how many were.
        """
        return self._letters.replay(event=event, consumer=consumer, ids=ids)

    def purge_dead_letters(
        self, *, event: str | None = None, consumer: str | None = None,
        ids: Iterable[str] | None = None,
    ) -> int:
        """Delete dead letters; without arguments, all of them. Returns how many."""
        return self._letters.purge(event=event, consumer=consumer, ids=ids)

    # -- fork ----------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork: forget the parent's workers and locks;
        # the child's first emit starts fresh ones. A storage built from a
        # name is rebuilt (a memory queue is the parent's to handle). A
        # storage object the user passed is reused when it is durable (shared
        # by design, and safe across a fork); a memory one holds the parent's
        # events, so the child refuses it until configure() is called again.
        self._new_locks()
        self._reset_state()
        settings = self._settings
        self._inherited_storage = (
            settings is not None and not isinstance(settings.storage, str)
            and not (isinstance(settings.storage, Durable) and settings.storage.durable is True)
        )


def _pending(stats: Mapping[str, int]) -> int:
    """How many events a storage's stats say are still to handle: queued, reserved or delayed."""
    return stats["queued"] + stats["reserved"] + stats["delayed"]


async def _on_a_thread(function: Callable[..., R], *args: Any) -> R:
    """Run a blocking call on a thread, so that the event loop goes on meanwhile."""
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def _describe(spec: Any) -> str:
    if isinstance(spec, str):
        return mask_url(spec)
    return type(spec).__name__


def _is_relay_pair(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping)
            and not isinstance(value[0], Mapping))


def _relay_and_options(entry: Any) -> tuple[Any, dict[str, Any]]:
    """A relay setting as ``(name, URL or object; its options)``."""
    if _is_relay_pair(entry):
        return entry[0], dict(entry[1])
    return entry, {}


# What debug=True changed, so that debug=False can change it back.
_debug_changes: dict[str, Any] = {}


def _apply_debug(debug: bool) -> None:
    root = logging.getLogger("rocketman")
    if debug:
        if not _debug_changes:
            _debug_changes["level"] = root.level
        root.setLevel(logging.DEBUG)
        if not root.handlers and not logging.getLogger().handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
            root.addHandler(handler)
            _debug_changes["handler"] = handler
    elif _debug_changes:
        root.setLevel(_debug_changes.pop("level", logging.NOTSET))
        handler = _debug_changes.pop("handler", None)
        if handler is not None:
            root.removeHandler(handler)


_exiting_on_interrupt = False
_previous_excepthook: Any = None


def _note_interrupt(kind: type[BaseException], value: BaseException, trace: Any) -> None:
    global _exiting_on_interrupt
    if issubclass(kind, KeyboardInterrupt):
        _exiting_on_interrupt = True
    _previous_excepthook(kind, value, trace)


def _watch_interrupts() -> None:
    """Learn whether the program ends on Ctrl-C: sys.excepthook runs before the atexit handlers.

    The hook before it is called as ever; only the fact is noted.
    """
    global _previous_excepthook
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _note_interrupt


def _shutdown_at_exit(ref: weakref.ReferenceType[Rocketman]) -> None:
    app = ref()
    if app is not None:
        try:
            # A program ending on Ctrl-C (in drain() or anywhere) wants out now:
            # what is left is counted in the WARNING, not waited for again.
            interrupted = app._interrupted or _exiting_on_interrupt
            app.shutdown(timeout=0 if interrupted else None)
        except Exception:
            logger.exception("rocketman failed to shut down at exit")


_runtimes: weakref.WeakSet[Rocketman] = weakref.WeakSet()


def _track_fork(app: Rocketman) -> None:
    _runtimes.add(app)


def _after_fork() -> None:
    new_id.reseed()
    for app in list(_runtimes):
        app._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
