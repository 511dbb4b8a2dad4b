"""What a backend offers beyond its contract, read once when it is built.

The :class:`~rocketman_core.Storage` contract has required methods and a few
optional members, which a storage has or has not: each is a small Protocol
here (a storage need not import them: they match by shape). When the core
builds or is given a backend, it checks the required contract and reads the
optional members once, into :class:`StorageFeatures`; from then on it calls
what the storage offers without asking again.

==================  ==========================================================
Required            ``contract_version`` and every method of ``Storage``
                    (``renew`` included: a storage without leases does
                    nothing there)
:class:`Durable`    ``durable: bool``: what it holds outlives the process
:class:`Renewing`   ``renew_interval: float``: seconds between renewals of
                    held leases
:class:`Releasing`  ``release(deliveries)``: give deliveries back unhandled
:class:`Interruptible`  ``interrupt()``: wake every blocked ``reserve``
:class:`Backlog`    ``backlog_bytes() -> int``: what waits in this process's
                    memory (bounds relays, see ``relay_backlog_bytes``)
:class:`AckingReserve`  ``ack_and_reserve(done, subscriptions, timeout,
                    max_count)``: acknowledge a batch and reserve the next
                    in one round trip
:class:`AsyncPush`  ``async push_async(name, message)`` and ``async
                    push_many_async(events)``: what ``emit_async`` awaits;
                    without them the core runs ``push`` in a thread
==================  ==========================================================

An executor is required to have ``start`` and ``stop``; its optional
members are :class:`Synchronous` (``synchronous: bool``) and
:class:`EventLoops` (``new_event_loop()``: the loop async consumers run on).
"""

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ._contracts import STORAGE_CONTRACT, Delivery, Storage
from ._errors import ConfigurationError
from ._urls import mask_url

__all__ = [
    "AckingReserve",
    "AsyncPush",
    "Backlog",
    "Durable",
    "EventLoops",
    "Interruptible",
    "Releasing",
    "Renewing",
    "StorageFeatures",
    "Synchronous",
    "check_contract",
    "check_storage",
    "close_quietly",
    "is_synchronous",
    "storage_features",
]

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger("rocketman")


@runtime_checkable
class Durable(Protocol):
    """A storage whose contents outlive the process (``durable = True``).

    The core then stops workers at shutdown without draining the queue (the
    next worker takes it), counts leftovers as kept, not lost, and warns
    about consumers whose name is not stable. A durable storage should pass
    :class:`rocketman_core.testing.DurableStorageContract`.
    """

    durable: bool


@runtime_checkable
class Renewing(Protocol):
    """A storage with leases: the core renews those it holds every ``renew_interval`` seconds."""

    renew_interval: float


@runtime_checkable
class Releasing(Protocol):
    """A storage that can give reserved deliveries back at once."""

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Put ``deliveries`` back at the front of their queues now, unhandled, in their order.

        A stopping worker returns the rest of its batch this way, rather than
        let it wait for a lease.
        """
        ...


@runtime_checkable
class Interruptible(Protocol):
    """A storage whose blocked reserves can be woken."""

    def interrupt(self) -> None:
        """Wake every :meth:`Storage.reserve` blocked now; it returns what it has (maybe nothing)."""
        ...


@runtime_checkable
class Backlog(Protocol):
    """A storage in this process's memory, which says how much waits in it."""

    def backlog_bytes(self) -> int:
        """Bytes of the messages queued or delayed now (not reserved, not dead)."""
        ...


@runtime_checkable
class AckingReserve(Protocol):
    """A storage that acknowledges a batch and reserves the next in one step (a round trip saved per batch)."""

    def ack_and_reserve(self, done: Sequence[Delivery], subscriptions: Sequence[str], timeout: float,
                        max_count: int = 1) -> list[Delivery]:
        """``ack(done)``, then ``reserve(subscriptions, timeout, max_count)``: the acks land before it blocks.

        When it raises, ``done`` may or may not be acknowledged: the worker
        passes them again to its next call (an ack is idempotent).
        """
        ...


@runtime_checkable
class AsyncPush(Protocol):
    """A storage that stores events without blocking an event loop: what ``emit_async`` awaits.

    Both are coroutine functions with the semantics of ``push`` and
    ``push_many``. A storage without them still serves ``emit_async``: the
    core runs its ``push`` on a thread, which never blocks the loop either
    but costs a thread hop per call.
    """

    async def push_async(self, name: str, message: bytes) -> None:
        """:meth:`Storage.push`, awaited: the event is stored when it returns."""
        ...

    async def push_many_async(self, events: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`Storage.push_many`, awaited."""
        ...


@runtime_checkable
class EventLoops(Protocol):
    """An executor that makes the event loop async consumers run on (uvloop's, say).

    The core runs that loop, one per process, on its thread
    (``rocketman-loop``) and, when nothing on it awaits, in the worker that
    brings a batch (only for loops that are asyncio's own, whose ready
    callbacks it can run), and owns its life: it starts it at the first async
    consumer's event, and at shutdown waits for the coroutines in flight,
    cancels the rest and gives their deliveries back, then stops and closes
    it. Without this member the core makes an asyncio loop.
    """

    def new_event_loop(self) -> "asyncio.AbstractEventLoop":
        """A new event loop, not running and not set as any thread's current one."""
        ...


@runtime_checkable
class Synchronous(Protocol):
    """An executor that may run nothing in the background (``synchronous = True``).

    The core then dispatches each event in the emitting thread and never
    calls ``start``.
    """

    synchronous: bool


class StorageFeatures(NamedTuple):
    """The optional members of one storage, read once: None (or False) where it has none."""

    durable: bool
    renew_interval: float | None
    release: Callable[[Sequence[Delivery]], None] | None
    interrupt: Callable[[], None] | None
    backlog_bytes: Callable[[], int] | None
    ack_and_reserve: Callable[[Sequence[Delivery], Sequence[str], float, int], list[Delivery]] | None = None
    push_async: Callable[[str, bytes], Awaitable[None]] | None = None
    push_many_async: Callable[[Sequence[tuple[str, bytes]]], Awaitable[None]] | None = None


def storage_features(storage: Storage, label: str | None = None) -> StorageFeatures:
    """Read the optional members of ``storage``; raise :class:`ConfigurationError` for a malformed one.

    ``label`` names the storage in the message (default: its repr).
    """
    label = label or repr(storage)
    durable = False
    if isinstance(storage, Durable):
        if not isinstance(storage.durable, bool):
            raise ConfigurationError(
                f"the storage {label} has durable={storage.durable!r}: it must be True or False")
        durable = storage.durable
    interval: float | None = None
    if isinstance(storage, Renewing):
        value = storage.renew_interval
        if value is not None:
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ConfigurationError(
                    f"the storage {label} has renew_interval={value!r}: it must be a positive "
                    "number of seconds (or absent, for a storage without leases)")
            interval = float(value)
    release = storage.release if isinstance(storage, Releasing) else None
    interrupt = storage.interrupt if isinstance(storage, Interruptible) else None
    backlog = storage.backlog_bytes if isinstance(storage, Backlog) else None
    piggyback = storage.ack_and_reserve if isinstance(storage, AckingReserve) else None
    for name, method in (("release", release), ("interrupt", interrupt), ("backlog_bytes", backlog),
                         ("ack_and_reserve", piggyback)):
        if method is not None and not callable(method):
            raise ConfigurationError(f"the storage {label} has {name}={method!r}: it must be a method")
    push_async = push_many_async = None
    if hasattr(storage, "push_async") or hasattr(storage, "push_many_async"):
        import inspect

        for name in ("push_async", "push_many_async"):
            method = getattr(storage, name, None)
            if not inspect.iscoroutinefunction(method):
                raise ConfigurationError(
                    f"the storage {label} has {name}={method!r}: it must be an async def method "
                    "(or both push_async and push_many_async absent: emit_async then runs push "
                    "on a thread)")
        push_async, push_many_async = (getattr(storage, "push_async"),  # noqa: B009 - typed Any
                                       getattr(storage, "push_many_async"))  # noqa: B009
    return StorageFeatures(durable, interval, release, interrupt, backlog, piggyback,
                           push_async, push_many_async)


def is_synchronous(executor: object) -> bool:
    """Whether ``executor`` runs each event in the emitting thread (``synchronous = True``)."""
    return isinstance(executor, Synchronous) and executor.synchronous is True


def check_storage(storage: Any, where: str | None = None, origin: str | None = None) -> StorageFeatures:
    """Check that ``storage`` meets the Storage contract this core speaks; return its features.

    Raises :class:`ConfigurationError` naming what is wrong. ``where`` is the
    name or URL it was selected by, ``origin`` the distribution that provides
    it, for the message.
    """
    label = repr(mask_url(where)) if where else repr(storage)
    if origin:
        label += f" (from {origin})"
    declared = hasattr(storage, "contract_version")
    if not declared and not (hasattr(storage, "push") and hasattr(storage, "reserve")):
        check_contract("storage", storage, Storage)  # not a storage at all: say what it lacks
    version = storage.contract_version if declared else 1  # contract 1 declared nothing
    if version != STORAGE_CONTRACT:
        raise ConfigurationError(
            f"the storage {label} implements rocketman's storage contract {version!r}, and this "
            f"rocketman needs contract {STORAGE_CONTRACT}: push(name, message), subscribe(), "
            "reserve(subscriptions, ...), retry_later(delivery, ...) and dead_letter(delivery, ...) "
            "(see CONTRIBUTING.md, 'Storage contract 2'). Upgrade the storage's distribution, or "
            "pin rocketman-core<0.2."
        )
    check_contract("storage", storage, Storage)
    return storage_features(storage, label)


def check_contract(kind: str, spec: Any, contract: type) -> None:
    """Raise :class:`ConfigurationError` unless ``spec`` has every member of ``contract``."""
    if not isinstance(spec, contract):
        missing = [
            name for name in dir(contract)
            if not name.startswith("_") and not hasattr(spec, name)
        ]
        raise ConfigurationError(
            f"{spec!r} is not a {kind}: give a {kind} name, a URL, or an object that meets "
            f"rocketman_core.{contract.__name__} (it lacks {', '.join(missing) or 'nothing'})"
        )


def close_quietly(storage: Any) -> None:
    """Close a storage the core refused or only built to check; a failure is logged at DEBUG."""
    try:
        storage.close()
    except Exception:
        logger.debug("closing a storage built to check it failed", exc_info=True)
