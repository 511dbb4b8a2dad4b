"""rocketman: pub-sub for Python programs.

Producers ``emit("user.signed_up", payload={...})``; consumers decorated with
``@on_event("user.signed_up")`` run on worker threads. Storage, executor and
relays are plugins chosen by configuration::

    import rocketman_core as rocketman

    @rocketman.on_event("user.signed_up")
    def welcome(payload):
        ...

    rocketman.emit("user.signed_up", payload={"id": 42})
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._backends import (
    AckingReserve,
    AsyncPush,
    Backlog,
    Durable,
    EventLoops,
    Interruptible,
    Releasing,
    Renewing,
    StorageFeatures,
    Synchronous,
    storage_features,
)
from ._config import Settings
from ._consumers import identity_of
from ._contracts import (
    STATS_KEYS,
    STORAGE_CONTRACT,
    SUBSCRIPTION_COUNT_KEYS,
    DeadLetter,
    Delivery,
    EmitFunction,
    Executor,
    Registration,
    Relay,
    Storage,
    Subscription,
    SubscriptionInfo,
)
from ._envelope import Event, MalformedMessage
from ._errors import (
    BacklogFull,
    ConfigurationError,
    PluginError,
    RocketmanError,
    StorageUnavailable,
    UnknownBackendError,
)
from ._hookspecs import hookimpl, hookspec
from ._runtime import DeadLetterRecord, Rocketman
from ._urls import mask_url, url_query

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
    "storage_features",
    "STATS_KEYS",
    "BacklogFull",
    "STORAGE_CONTRACT",
    "SUBSCRIPTION_COUNT_KEYS",
    "ConfigurationError",
    "Consumer",
    "DeadLetter",
    "DeadLetterRecord",
    "Delivery",
    "EmitFunction",
    "Event",
    "Executor",
    "MalformedMessage",
    "PluginError",
    "Producer",
    "Registration",
    "Relay",
    "Rocketman",
    "RocketmanError",
    "Settings",
    "Storage",
    "StorageUnavailable",
    "Subscription",
    "SubscriptionInfo",
    "UnknownBackendError",
    "configure",
    "current",
    "dead_letters",
    "drain",
    "drain_async",
    "emit",
    "emit_async",
    "emit_many",
    "emit_many_async",
    "hookimpl",
    "hookspec",
    "identity_of",
    "mask_url",
    "on_event",
    "purge_dead_letters",
    "register_plugin",
    "remove_subscription",
    "replay_dead_letters",
    "shutdown",
    "start",
    "url_query",
    "stats",
    "subscriptions",
    "using",
]

__version__ = "0.1.0"

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

_default = Rocketman()
_current = _default


def current() -> Rocketman:
    """The runtime the module-level functions use (the default one, or a test's)."""
    return _current


@contextmanager
def using(app: Rocketman) -> Iterator[Rocketman]:
    """Make ``app`` the current runtime inside the ``with`` block (for tests)."""
    global _current
    previous, _current = _current, app
    try:
        yield app
    finally:
        _current = previous


def _delegate(method: Callable[Concatenate[Rocketman, P], R]) -> Callable[P, R]:
    """The module-level function for ``method``: it calls it on the current runtime.

    The runtime is looked up at each call, so that ``using()`` (and the
    pytest fixture) can swap it; the signature and docstring are the method's.
    """

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(_current, *args, **kwargs)

    functools.update_wrapper(call, method)
    call.__qualname__ = call.__name__
    # help() and inspect.signature() follow __wrapped__: a method bound to a
    # runtime shows the signature without ``self``, and nothing imports
    # inspect here (with what it imports, a fifth of the import's cost).
    call.__wrapped__ = types.MethodType(method, _default)  # type: ignore[attr-defined]
    return call


configure = _delegate(Rocketman.configure)
emit_many = _delegate(Rocketman.emit_many)
emit_async = _delegate(Rocketman.emit_async)
emit_many_async = _delegate(Rocketman.emit_many_async)
drain_async = _delegate(Rocketman.drain_async)
start = _delegate(Rocketman.start)
drain = _delegate(Rocketman.drain)
shutdown = _delegate(Rocketman.shutdown)
stats = _delegate(Rocketman.stats)
subscriptions = _delegate(Rocketman.subscriptions)
remove_subscription = _delegate(Rocketman.remove_subscription)
dead_letters = _delegate(Rocketman.dead_letters)
replay_dead_letters = _delegate(Rocketman.replay_dead_letters)
purge_dead_letters = _delegate(Rocketman.purge_dead_letters)
register_plugin = _delegate(Rocketman.register_plugin)


def emit(name: str, payload: Any = None) -> str:
    """Emit the event ``name`` with a JSON ``payload``; return its id.

    Written out rather than delegated: it is every producer's hot path.
    """
    return _current.emit(name, payload)


def on_event(pattern: str, *, name: str | None = None, start: str = "parked") -> Callable[[F], F]:
    """Register the decorated function (or Consumer method) for ``pattern``.

    The function is called with the payload; a parameter named ``event``
    also receives the :class:`Event` (id, name, attempt, emitted_at).
    ``name`` names its subscription (default ``module:qualname``); see
    :meth:`Rocketman.on_event`.
    """
    _current.on_event(pattern, name=name, start=start)  # checks the arguments now

    def decorate(function: F) -> F:
        return _current.on_event(pattern, name=name, start=start)(function)

    return decorate


class Producer:
    """A mixin giving a class ``self.emit(name, payload=None)``, and its async forms."""

    def emit(self, name: str, payload: Any = None) -> str:
        """Emit the event ``name``; see :func:`rocketman_core.emit`."""
        return _current.emit(name, payload)

    async def emit_async(self, name: str, payload: Any = None) -> str:
        """``await`` it: emit the event ``name`` from async code; see :func:`rocketman_core.emit_async`."""
        return await _current.emit_async(name, payload)

    async def emit_many_async(self, events: Iterable[tuple[str, Any]]) -> list[str]:
        """``await`` it: emit several events; see :func:`rocketman_core.emit_many_async`."""
        return await _current.emit_many_async(events)

    async def drain_async(self, timeout: float | None = None) -> bool:
        """``await`` it: wait until what was emitted is handled; see :func:`rocketman_core.drain_async`."""
        return await _current.drain_async(timeout)


class Consumer:
    """A base class whose methods decorated with ``@on_event`` are consumers.

    They are registered when the subclass is defined, with the current
    runtime. The class is instantiated once, without arguments, at its first
    event, and that instance receives every event::

        class Mailer(rocketman.Consumer):
            @rocketman.on_event("user.signed_up")
            def welcome(self, payload):
                ...
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for value in list(cls.__dict__.values()):
            for pattern, name, start in getattr(value, "__rocketman_events__", ()):
                _current.consumers.add(pattern, value, owner=cls, name=name, start=start)
