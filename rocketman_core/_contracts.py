"""The contracts every backend meets: Storage, Executor and Relay.

They are :class:`typing.Protocol` classes, so a backend need not import the
core to satisfy them (the memory storage and the thread executor do not).
A backend may also subclass them explicitly to inherit the no-op defaults of
the optional lifecycle methods.

The semantics are in the docstrings, and the conformance kit in
:mod:`rocketman_core.testing` checks them; a backend that passes the kit is a
backend the core can use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "DeadLetter",
    "Delivery",
    "EmitFunction",
    "Executor",
    "Relay",
    "Storage",
    "STATS_KEYS",
]

#: The keys of :meth:`Storage.stats`, in display order.
STATS_KEYS = ("queued", "reserved", "delayed", "dead")

#: What a relay calls to publish what it receives: ``emit(name, payload)``.
EmitFunction = Callable[[str, Any], None]


@runtime_checkable
class Delivery(Protocol):
    """One message reserved by a worker, until it is acknowledged.

    A storage returns its own delivery objects from :meth:`Storage.reserve`
    and takes them back in :meth:`Storage.ack` and :meth:`Storage.renew`; the
    core reads only :attr:`message`.
    """

    @property
    def message(self) -> bytes:
        """The bytes that were pushed, exactly."""
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
    """

    id: str
    message: bytes
    reason: str
    failed_at: float


@runtime_checkable
class Storage(Protocol):
    """A queue of encoded events, shared by the producers and the workers.

    A storage moves opaque ``bytes``; it never decodes them. Every method is
    thread-safe: any number of threads may push, reserve and acknowledge at
    once. A message is, at any moment, in exactly one of four places:

    * *queued*: pushed (or due again) and waiting for a worker;
    * *reserved*: handed to a worker by :meth:`reserve`, until :meth:`ack`;
    * *delayed*: waiting for its due time (:meth:`retry_later`);
    * *dead*: kept aside with a reason (:meth:`dead_letter`).

    Messages are delivered in the order they were pushed as far as the
    storage can keep it; consumers must not rely on order across workers.
    Delivery is at least once: a storage may hand a message out again
    (after a crash, when a lease expires), never zero times once
    :meth:`push` has returned.

    Optional members, which the core uses when present:

    * ``durable: bool``: True when what the storage holds outlives the
      process. The core then stops workers at shutdown without draining the
      queue (the next worker takes it), and counts leftovers as kept, not lost.
    * ``renew_interval: float``: seconds between lease renewals; the core then
      calls :meth:`renew` that often with the deliveries it holds.
    * ``release(deliveries)``: give reserved deliveries back to the queue now,
      unhandled (a stopping worker returns the rest of its batch).
    * ``interrupt()``: wake every :meth:`reserve` blocked now, so that stopping
      workers need not wait out their ``timeout``.
    """

    def push(self, message: bytes) -> None:
        """Queue one message.

        When this returns, the message is stored as durably as the storage
        promises. Raises an error (never hangs past a bounded time) when the
        storage cannot take it, for example when a server is unreachable.
        """
        ...

    def push_many(self, messages: Sequence[bytes]) -> None:
        """Queue several messages, in order, in as few round trips as possible.

        Same guarantees as :meth:`push` for each message.
        """
        ...

    def reserve(self, timeout: float, max_count: int = 1) -> list[Any]:
        """Take up to ``max_count`` queued messages for one worker.

        Blocks until at least one message is queued or ``timeout`` seconds
        have passed; never sleeps while a message is ready. Returns the
        deliveries (objects with a ``message`` attribute, see
        :class:`Delivery`), or an empty list on timeout. Takes more than one
        only when they are ready at once; it should not take more than its
        share when other workers are waiting. Messages whose delay has
        expired count as queued.

        Each delivery stays reserved until :meth:`ack`. A storage that
        survives crashes gives a reserved message back to the queue when its
        holder dies (a lease); the core calls :meth:`renew` for deliveries
        held a long time.
        """
        ...

    def ack(self, deliveries: Sequence[Any]) -> None:
        """Acknowledge deliveries: the worker is done with them, forget them.

        Acknowledging a delivery twice, or one whose lease was lost, is not
        an error and changes nothing.
        """
        ...

    def renew(self, deliveries: Sequence[Any]) -> None:
        """Extend the leases of deliveries still being handled.

        A storage without leases does nothing.
        """
        ...

    def retry_later(self, message: bytes, delay: float) -> None:
        """Keep ``message`` delayed; it becomes queued ``delay`` seconds from now.

        The message is new (the core encodes a retry for one consumer); the
        delivery it came from is acknowledged separately.
        """
        ...

    def dead_letter(self, message: bytes, reason: str) -> None:
        """Keep ``message`` aside with ``reason``; it is not delivered again.

        It stays until replayed or purged, and counts in ``stats()["dead"]``.
        """
        ...

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """List dead letters, oldest first, at most ``limit`` of them."""
        ...

    def replay_dead_letters(self, replacements: Mapping[str, bytes]) -> int:
        """Queue a message in place of each dead letter named by id.

        ``replacements`` maps a dead letter's id to the bytes to queue in its
        place (the core resets the attempt count). Each dead letter is
        removed and its replacement queued atomically: it is never in both
        places, nor lost. Ids that are not dead letters (any more) are
        ignored. Returns how many were replayed.
        """
        ...

    def purge_dead_letters(self, ids: Sequence[str] | None = None) -> int:
        """Delete the dead letters named by id, or all when ``ids`` is None.

        Returns how many were deleted.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Count the messages in each place, with the keys of ``STATS_KEYS``.

        ``queued`` includes delayed messages already due. The counts are a
        consistent snapshot where the storage can give one.
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
    """

    def start(self, emit: EmitFunction) -> None:
        """Start listening in the background, calling ``emit(name, payload)``.

        Returns promptly; a relay whose outside system is unreachable keeps
        trying in the background and logs, it does not raise here.
        """
        ...

    def stop(self, timeout: float | None = None) -> None:
        """Stop listening, and end the relay's thread within ``timeout``. Idempotent."""
        ...
