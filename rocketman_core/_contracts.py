"""The contracts every backend meets: Storage, Executor and Relay.

They are :class:`typing.Protocol` classes, so a backend need not import the
core to satisfy them (the memory storage and the thread executor do not).
A backend may also subclass them explicitly to inherit the no-op defaults of
the optional lifecycle methods.

The semantics are in the docstrings, and the conformance kit in
:mod:`rocketman_core.testing` checks them; a backend that passes the kit is a
backend the core can use.
"""

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "STATS_KEYS",
    "STORAGE_CONTRACT",
    "SUBSCRIPTION_COUNT_KEYS",
    "DeadLetter",
    "Delivery",
    "EmitFunction",
    "Executor",
    "Registration",
    "Relay",
    "Storage",
    "Subscription",
    "SubscriptionInfo",
]

#: The version of the Storage contract this core speaks. A storage declares
#: the one it implements in ``contract_version``; the core refuses another.
#: Version 2 brought subscriptions: ``push`` takes the event's name, a reserve
#: names the subscriptions it takes for, and ``retry_later`` / ``dead_letter``
#: receive the delivery they replace.
STORAGE_CONTRACT = 2

#: The keys of :meth:`Storage.stats`, in display order.
STATS_KEYS = ("queued", "reserved", "delayed", "dead", "parked", "dropped")

#: The keys of a subscription's backlog, :attr:`SubscriptionInfo.counts`.
SUBSCRIPTION_COUNT_KEYS = ("queued", "reserved", "delayed", "dead")

#: What a relay calls to publish what it receives: ``emit(name, payload)``.
EmitFunction = Callable[[str, Any], None]


class Subscription(NamedTuple):
    """One consumer as a storage knows it: a stable name and the patterns it listens to.

    :param name: unique in the storage (``module:qualname`` by default, or
        the ``name=`` given to ``@on_event``); 1 to 255 characters without
        whitespace.
    :param patterns: event names, or patterns where ``*`` matches any
        characters (``"user.*"``, ``"*"``); an event matching any one of them
        is delivered to this subscription.
    :param start: what a subscription *created* by this registration
        receives besides the events emitted from now on: ``"parked"`` (the
        default) also copies the parked events that match it; ``"now"`` does
        not.
    """

    name: str
    patterns: tuple[str, ...]
    start: str = "parked"


class Registration(NamedTuple):
    """What :meth:`Storage.subscribe` did with one subscription.

    :param name: the subscription's name.
    :param created: True when the storage did not have it before.
    :param previous: the patterns it had before, when this registration
        changed them (the newest registration wins); None otherwise.
    :param parked: how many parked events were copied into it (creation with
        ``start="parked"`` only).
    """

    name: str
    created: bool
    previous: tuple[str, ...] | None = None
    parked: int = 0


class SubscriptionInfo(NamedTuple):
    """A subscription as :meth:`Storage.subscriptions` lists it, for operators.

    :param name: the subscription's name.
    :param patterns: the patterns of its latest registration.
    :param counts: its backlog, with the keys of ``SUBSCRIPTION_COUNT_KEYS``.
    :param hosts: the processes that host it, or hosted it until they
        stopped without saying so (a crash), each with when it was last seen
        (seconds since the epoch); a storage may forget hosts not seen for a
        long time. A process that stopped cleanly (:meth:`Storage.leave`) is
        not among them.
    :param created_at: when it was first registered (seconds since the epoch).
    :param last_seen: when a process last hosted it, or None if never.
    """

    name: str
    patterns: tuple[str, ...]
    counts: Mapping[str, int]
    hosts: Mapping[str, float]
    created_at: float
    last_seen: float | None = None


@runtime_checkable
class Delivery(Protocol):
    """One message reserved by a worker for one subscription, until it is acknowledged.

    A storage returns its own delivery objects from :meth:`Storage.reserve`
    and takes them back in :meth:`Storage.ack`, :meth:`Storage.renew`,
    :meth:`Storage.retry_later` and :meth:`Storage.dead_letter`; the core
    reads only the two attributes below, and gives a storage back only the
    deliveries it returned. A storage may annotate its ``reserve`` as
    returning its own class; its other methods take ``Delivery`` (or
    ``Any``) and may rely on getting their own objects back.
    """

    @property
    def message(self) -> bytes:
        """The bytes that were pushed, exactly."""
        ...

    @property
    def subscription(self) -> str:
        """The name of the subscription this delivery is for."""
        ...


class DeadLetter(NamedTuple):
    """A message a storage keeps aside, with the reason it was put there.

    :param id: the storage's identifier for this dead letter, unique within
        the storage; what :meth:`Storage.replay_dead_letters` and
        :meth:`Storage.purge_dead_letters` take.
    :param message: the bytes that were dead-lettered, exactly (they may not
        be a valid envelope: malformed messages are dead-lettered too).
    :param reason: why, as text (an error with its traceback).
    :param failed_at: when, in seconds since the epoch.
    :param subscription: the subscription whose delivery it was, or None
        when the storage does not know (a dead letter kept by an older
        version).
    """

    id: str
    message: bytes
    reason: str
    failed_at: float
    subscription: str | None = None


@runtime_checkable
class Storage(Protocol):
    """Where events wait for the subscriptions that want them; shared by producers and workers.

    A storage moves opaque ``bytes``; it never decodes them. Every method is
    thread-safe: any number of threads may push, reserve and acknowledge at
    once.

    **Subscriptions and routing.** A subscription (:class:`Subscription`) is
    one consumer: a stable name and its patterns. Processes that host a
    consumer register its subscription with :meth:`subscribe`; the storage
    keeps it, and keeps routing to it, while no process hosts it (a deploy, a
    crash), until :meth:`unsubscribe`. :meth:`push` routes each event, by
    the name passed beside its bytes, to every subscription that exists and
    matches at that moment: each of them gets its own copy, its own
    delivery, retries and dead letters. A storage may do the routing a
    moment later (the Redis storage's workers do), provided the outcome is
    the same as routing at the push: the subscriptions that existed then,
    whatever was registered or changed since. A producer needs no knowledge of the
    consumers. An event no subscription matches is either *parked* (a
    durable storage keeps it, in a bounded log, and copies it into each
    matching subscription created later with ``start="parked"``) or
    *dropped* (counted in ``stats()["dropped"]``); evicting a parked event
    counts it as dropped too.

    **Places.** A subscription's copy of a message is, at any moment, in
    exactly one of four places:

    * *queued*: routed (or due again) and waiting for a worker;
    * *reserved*: handed to a worker by :meth:`reserve`, until it is
      acknowledged (:meth:`ack`) or replaced (:meth:`retry_later`,
      :meth:`dead_letter`);
    * *delayed*: waiting for its due time (:meth:`retry_later`);
    * *dead*: kept aside with a reason (:meth:`dead_letter`).

    Messages of one subscription are delivered in the order they were pushed
    as far as the storage can keep it; consumers must not rely on order
    across workers. Delivery is at least once: a storage may hand a message
    out again (after a crash, when a lease expires), never zero times once
    :meth:`push` has returned and the subscription existed.

    Optional members, which the core uses when present, each a small
    Protocol (:class:`~rocketman_core.Durable`, :class:`~rocketman_core.Renewing`,
    :class:`~rocketman_core.Releasing`, :class:`~rocketman_core.Interruptible`,
    :class:`~rocketman_core.Backlog`), read once when the storage is built
    (see :func:`~rocketman_core.storage_features`; a malformed one fails
    at ``configure``):

    * ``durable: bool``: True when what the storage holds outlives the
      process. The core then stops workers at shutdown without draining the
      queue (the next worker takes it), counts leftovers as kept, not lost,
      and warns about consumers whose name is not stable. A durable storage
      should pass :class:`rocketman_core.testing.DurableStorageContract`.
    * ``renew_interval: float``: seconds between lease renewals; the core then
      calls :meth:`renew` that often with the deliveries it holds.
    * ``release(deliveries)``: give reserved deliveries back to the front of
      their queues now, unhandled (a stopping worker returns the rest of its
      batch).
    * ``interrupt()``: wake every :meth:`reserve` blocked now, so that stopping
      workers need not wait out their ``timeout``.
    * ``backlog_bytes() -> int``: for a storage in this process's memory, the
      bytes queued or delayed; relays are refused past ``relay_backlog_bytes``.
    * ``async push_async(name, message)`` and ``async push_many_async(events)``
      (:class:`~rocketman_core.AsyncPush`): what ``emit_async`` awaits, with
      the semantics of :meth:`push` and :meth:`push_many`, never blocking the
      event loop. Both or neither; without them ``emit_async`` runs
      :meth:`push` on a thread. Consuming needs nothing async: reserve, ack
      and retries run on threads, never on the loop.

    Required: ``contract_version`` and every method below. ``renew`` is
    required too: a storage without leases does nothing there.
    """

    #: The version of the contract the storage implements: ``STORAGE_CONTRACT``.
    contract_version: int

    # -- subscriptions ------------------------------------------------------

    def subscribe(self, subscriptions: Sequence[Subscription], host: str) -> list[Registration]:
        """Register subscriptions, as hosted by the process ``host``, and return what changed.

        Must be idempotent. A subscription the storage does not have is
        created (empty, plus the matching parked events when its ``start`` is
        ``"parked"``, copied atomically with the creation). One it has keeps
        its backlog; when its patterns differ, the new ones replace them at
        once (the newest registration wins). The storage records that
        ``host`` (an opaque string naming one process) hosts each of them,
        now. Returns one :class:`Registration` per subscription, in order.
        """
        ...

    def keep_alive(self, host: str, names: Sequence[str]) -> list[str]:
        """Record that ``host`` still hosts the subscriptions ``names``, now.

        Called every few seconds by each process hosting subscriptions; a
        storage may do its periodic housekeeping here (evicting old parked
        events, say). Never changes a subscription's patterns. Returns the
        names the storage does not have (removed meanwhile), which the
        caller registers again with :meth:`subscribe`.
        """
        ...

    def leave(self, host: str, names: Sequence[str]) -> None:
        """The process ``host`` stops hosting ``names`` (it is stopping cleanly).

        The storage forgets it as a host of them, and remembers now as when
        they were last hosted. The subscriptions stay, and keep receiving.
        """
        ...

    def unsubscribe(self, name: str) -> bool:
        """Remove the subscription ``name`` with its whole backlog, dead letters included.

        Events emitted afterwards are no longer routed to it. Returns whether
        it existed.
        """
        ...

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subscription with its patterns, backlog and hosts, by name."""
        ...

    # -- producing ----------------------------------------------------------

    def push(self, name: str, message: bytes) -> None:
        """Route one message, the event named ``name``, to the subscriptions matching it.

        When this returns, the event is stored as durably as the storage
        promises, and it reaches each subscription that exists now and
        matches it (see routing, above), or the parked log. Raises an error
        (never hangs past a bounded time) when the storage cannot take it,
        for example when a server is unreachable.
        """
        ...

    def push_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        """Route several ``(name, message)`` events, in order, in as few round trips as possible.

        Same guarantees as :meth:`push` for each.
        """
        ...

    # -- consuming ----------------------------------------------------------

    def reserve(
        self, subscriptions: Sequence[str], timeout: float, max_count: int = 1
    ) -> Sequence[Delivery]:
        """Take up to ``max_count`` queued messages of the named subscriptions, for one worker.

        Takes only from the subscriptions named (those the calling process
        hosts), and fairly across them: a subscription with a large backlog
        does not starve the others. Blocks until at least one message is
        queued for one of them or ``timeout`` seconds have passed; never
        sleeps while a message is ready. Returns the deliveries (see
        :class:`Delivery`), or an empty list on timeout. Takes more than one
        only when they are ready at once; it should not take more than its
        share when other workers are waiting. Messages whose delay has
        expired count as queued. A name the storage does not have yields
        nothing.

        Each delivery stays reserved until it is acknowledged or replaced. A
        storage that survives crashes gives a reserved message back to its
        queue when its holder dies (a lease); the core calls :meth:`renew`
        for deliveries held a long time.
        """
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries: the worker is done with them, forget them.

        Acknowledging a delivery twice, or one whose lease was lost, is not
        an error and changes nothing.
        """
        ...

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        """Extend the leases of deliveries still being handled.

        A storage without leases does nothing.
        """
        ...

    def retry_later(self, delivery: Delivery, message: bytes, delay: float) -> None:
        """Replace ``delivery`` by ``message``, delayed: queued again ``delay`` seconds from now.

        For the same subscription. Recording the retry and acknowledging the
        delivery are one atomic step: a crash cannot leave both, nor
        neither. ``message`` is new (the core encodes the next attempt).
        When the delivery is no longer held (acknowledged, or its lease lost
        to another worker), nothing is recorded.
        """
        ...

    def dead_letter(self, delivery: Delivery, message: bytes, reason: str) -> None:
        """Replace ``delivery`` by the dead letter ``message`` with ``reason``; not delivered again.

        Atomic with the acknowledgement, as :meth:`retry_later`. The letter
        belongs to the delivery's subscription, stays until replayed or
        purged, and counts in ``stats()["dead"]``.
        """
        ...

    # -- dead letters ---------------------------------------------------------

    def dead_letters(
        self, limit: int | None = None, subscription: str | None = None
    ) -> list[DeadLetter]:
        """List dead letters, oldest first, at most ``limit``, of one subscription or all."""
        ...

    def replay_dead_letters(self, replacements: Mapping[str, tuple[str, bytes]]) -> int:
        """Queue a message in place of each dead letter named by id.

        ``replacements`` maps a dead letter's id to ``(subscription,
        bytes)``: the bytes to queue for that subscription in its place (the
        core resets the attempt count, and names the letter's subscription).
        Each dead letter is removed and its replacement queued atomically: it
        is never in both places, nor lost. Ids that are not dead letters (any
        more), and subscriptions that do not exist, are skipped: the letter
        stays. Returns how many were replayed.
        """
        ...

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the dead letters named by id, or all when ``ids`` is None.

        Returns how many were deleted.
        """
        ...

    # -- accounting -----------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Totals over every subscription, with the keys of ``STATS_KEYS``.

        ``queued`` includes delayed messages already due; ``parked`` counts
        the events kept for subscriptions to come (0 on a storage that does
        not park); ``dropped`` the events no subscription received, since
        the storage was created. The counts are a consistent snapshot where
        the storage can give one.
        """
        ...

    def close(self) -> None:
        """Release connections and resources. Idempotent.

        What is stored is kept where the storage is durable; a memory
        storage loses what it holds (the core drains it first).
        """
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs the workers: the loops that reserve messages and dispatch them.

    The core owns the loop (``worker`` below); the executor decides where it
    runs (threads, greenlets, ...) and how to start and stop it.

    **Async consumers.** Workers are plain callables, whatever the
    executor: the core runs ``async def`` consumers on one event loop thread
    per process, fed by the workers, and owns that loop's life (the bound on
    coroutines in flight, lease renewal while they await, cancellation and
    give-back at shutdown). An executor may choose the loop with the optional
    ``new_event_loop()`` (:class:`~rocketman_core.EventLoops`); otherwise the
    core makes an asyncio loop. A ``synchronous`` executor's events run in
    the emitting thread: an async consumer is awaited by ``emit_async``, and
    run to completion by ``emit`` unless a loop runs in that thread (then
    ``emit`` raises ``RuntimeError``, pointing to ``emit_async``).
    """

    #: True for an executor that runs nothing in the background: the core then
    #: dispatches each event in the emitting thread and never calls start().
    synchronous: bool

    def start(self, worker: Callable[[threading.Event], None], count: int) -> None:
        """Start ``count`` workers, each calling ``worker(stopping)``.

        ``worker`` returns once ``stopping`` is set (within the configured
        latency). Workers must not keep the interpreter alive at exit (use
        daemon threads): the core stops them from an ``atexit`` handler after
        draining. Calling start on a started executor is an error.
        """
        ...

    def stop(self, timeout: float | None = None) -> bool:
        """Ask every worker to stop and wait up to ``timeout`` seconds.

        Returns True when every worker has returned. Idempotent.
        """
        ...


@runtime_checkable
class Relay(Protocol):
    """A producer that listens to an outside system and emits what it receives.

    A relay owns its connection and its thread. Everything it receives goes
    through ``emit``, so relayed events get the configured storage, retries
    and dead letters like any other.

    **The payload rule.** A message's payload is its JSON value when its text
    is strict JSON, else the text itself, unchanged: ``{"a": 1}`` is a dict,
    ``42`` a number, ``hello`` and the empty text are strings. Strict: ``NaN``,
    ``Infinity``, a number beyond a double's range (``1e400``) and JSON nested
    deeper than the parser's stack stay text, since ``emit`` cannot encode the
    first three. A message that is bytes must be UTF-8; bytes that are not are
    no event: the relay drops the message, counts it and logs it
    (rate-limited), and never emits bytes nor a lossy decoding of them.
    :func:`rocketman_core.plugin.relay_payload` is the rule as a function;
    the event name is checked by ``emit`` itself
    (:func:`rocketman_core.plugin.validate_event_name`).

    **Starting again.** ``start`` on a running relay raises ``RuntimeError``.
    A stopped relay may be started again: ``start`` after ``stop`` connects
    and subscribes anew, and calls the new ``emit`` only (a runtime shut
    down and started again restarts the relay objects it was given).

    **The conformance kit.** ``rocketman_core.testing.RelayContract`` tests
    these promises with two fixtures of the relay's tests: ``relay`` (an
    unstarted relay) and ``publish(name, text)``, which must start any thread
    it needs when it is built, not on its first call (the kit counts the
    threads alive before ``start`` and after ``stop``).
    ``RelayRestartContract`` adds the outage tests (``restart_server``,
    ``stop_server``).
    """

    def start(self, emit: EmitFunction) -> None:
        """Start listening in the background, calling ``emit(name, payload)``.

        Returns promptly; a relay whose outside system is unreachable keeps
        trying in the background and logs, it does not raise here. ``emit``
        raises :class:`BacklogFull` when a storage in the process's memory
        holds more than ``relay_backlog_bytes``: drop the message, count
        it, log at most a line every few seconds, and never wait.
        """
        ...

    def stop(self, timeout: float | None = None) -> None:
        """Stop listening, and end the relay's thread within ``timeout`` seconds.

        Idempotent: stopping a stopped or never started relay does nothing,
        promptly. Prompt while the relay waits to reconnect, too. Called from
        ``emit``'s thread (a consumer run inline that shuts rocketman down),
        it asks the relay to stop and returns without waiting for itself.
        """
        ...
