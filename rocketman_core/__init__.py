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

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._config import Settings
from ._consumers import identity_of
from ._contracts import STATS_KEYS, DeadLetter, Delivery, EmitFunction, Executor, Relay, Storage
from ._envelope import Event, MalformedMessage
from ._errors import ConfigurationError, PluginError, RocketmanError, UnknownBackendError
from ._hookspecs import hookimpl, hookspec
from ._runtime import _UNSET, DeadLetterRecord, Rocketman
from ._urls import mask_url

__all__ = [
    "STATS_KEYS",
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
    "Relay",
    "Rocketman",
    "RocketmanError",
    "Settings",
    "Storage",
    "UnknownBackendError",
    "configure",
    "current",
    "dead_letters",
    "drain",
    "emit",
    "emit_many",
    "hookimpl",
    "hookspec",
    "identity_of",
    "mask_url",
    "on_event",
    "purge_dead_letters",
    "register_plugin",
    "replay_dead_letters",
    "shutdown",
    "start",
    "stats",
    "using",
]

__version__ = "0.1.0"

F = TypeVar("F", bound=Callable[..., Any])

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


def configure(
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
) -> Settings:
    """Configure the current runtime; see :meth:`Rocketman.configure` and :class:`Settings`.

    A setting not given comes from ``ROCKETMAN_<NAME>``, else its default.
    """
    given = {key: value for key, value in locals().items() if value is not _UNSET}
    return _current.configure(**given)


def emit(name: str, payload: Any = None) -> str:
    """Emit the event ``name`` with a JSON ``payload``; return its id."""
    return _current.emit(name, payload)


def emit_many(events: Iterable[tuple[str, Any]]) -> list[str]:
    """Emit several ``(name, payload)`` events at once; return their ids."""
    return _current.emit_many(events)


def on_event(pattern: str) -> Callable[[F], F]:
    """Register the decorated function (or Consumer method) for ``pattern``.

    The function is called with the payload; a parameter named ``event``
    also receives the :class:`Event` (id, name, attempt, emitted_at).
    """

    def decorate(function: F) -> F:
        return _current.on_event(pattern)(function)

    return decorate


def start() -> None:
    """Start the workers and the configured relays now."""
    _current.start()


def drain(timeout: float | None = None) -> bool:
    """Wait until every event emitted so far was handled; see :meth:`Rocketman.drain`."""
    return _current.drain(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Drain for up to ``timeout`` and stop; see :meth:`Rocketman.shutdown`."""
    return _current.shutdown(timeout)


def stats() -> dict[str, int]:
    """The storage's counts: queued, reserved, delayed, dead."""
    return _current.stats()


def dead_letters(
    *, event: str | None = None, consumer: str | None = None, limit: int | None = None
) -> list[DeadLetterRecord]:
    """List the dead letters; see :meth:`Rocketman.dead_letters`."""
    return _current.dead_letters(event=event, consumer=consumer, limit=limit)


def replay_dead_letters(
    *, event: str | None = None, consumer: str | None = None, ids: Iterable[str] | None = None
) -> int:
    """Queue dead letters again; see :meth:`Rocketman.replay_dead_letters`."""
    return _current.replay_dead_letters(event=event, consumer=consumer, ids=ids)


def purge_dead_letters(
    *, event: str | None = None, consumer: str | None = None, ids: Iterable[str] | None = None
) -> int:
    """Delete dead letters; see :meth:`Rocketman.purge_dead_letters`."""
    return _current.purge_dead_letters(event=event, consumer=consumer, ids=ids)


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object in code, without installing a distribution."""
    _current.register_plugin(plugin, name)


class Producer:
    """A mixin giving a class ``self.emit(name, payload=None)``."""

    def emit(self, name: str, payload: Any = None) -> str:
        """Emit the event ``name``; see :func:`rocketman_core.emit`."""
        return _current.emit(name, payload)


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
            for pattern in getattr(value, "__rocketman_events__", ()):
                _current.consumers.add(pattern, value, owner=cls)
