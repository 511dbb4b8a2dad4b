"""Hook specifications: what a rocketman plugin may implement.

A plugin is a module named by an entry point in the group ``rocketman``; its
functions marked with :data:`rocketman_core.hookimpl` are called by name.
pluggy checks that each implementation's arguments are a subset of the
specification's, so a plugin may leave out the arguments it does not use.

Registration hooks are called once, when the plugins are loaded (lazily, on
the first configuration or emit). Broadcast hooks are called on every event;
when no plugin implements one it costs nothing, because the core checks once
whether it has implementations and skips the call otherwise.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

__all__ = ["Register", "hookimpl", "hookspec"]

#: The marker for hook specifications (the core's).
hookspec = pluggy.HookspecMarker("rocketman")
#: The marker plugin authors put on their hook implementations.
hookimpl = pluggy.HookimplMarker("rocketman")


class Register(Protocol):
    """The callback a registration hook receives."""

    def __call__(
        self, name: str, factory: Any, *, schemes: tuple[str, ...] = (), raw_url: bool = False
    ) -> None:
        """Register ``factory`` under ``name``.

        :param name: the name users select the backend by
            (``storage="name"``); lowercase letters, digits, ``-`` and ``_``.
        :param factory: a callable; ``factory(**options)`` builds the backend.
            Options come from configuration and from a URL's query string
            (as strings, percent-decoded, ``+`` and ``#`` kept as written);
            a URL selection also passes ``url=``, the URL before its ``?``. A
            factory rejects an option it does not know with a ``TypeError`` or
            ``ValueError`` that names it. ``configure()`` calls it once to
            check the options, and closes what it built: a factory must not
            connect or start anything (connect on first use).
        :param schemes: more URL schemes that select this backend
            (``rediss`` and ``unix`` besides ``redis``).
        :param raw_url: pass ``url=`` as written, query and all, and no
            options from it: for a backend whose driver takes parameters of
            its own in the URL (redis-py's ``?ssl_cert_reqs=none``), which it
            passes through while it still catches a misspelt option of its own
            (:func:`rocketman_core.url_query` splits a query as written).
        """


@hookspec
def register_storages(register: Register) -> None:
    """Register the storages this plugin provides.

    Called once, when plugins are loaded. Call ``register(name, factory)`` for
    each storage; the object ``factory(**options)`` returns must meet
    :class:`rocketman_core.Storage`.

    Do not connect to anything or import heavy libraries here: do that in the
    factory, which runs only when the configuration selects the storage.

    :param register: the :class:`Register` callback.
    """


@hookspec
def register_executors(register: Register) -> None:
    """Register the executors this plugin provides.

    Called once, when plugins are loaded. Call ``register(name, factory)`` for
    each executor; the object ``factory(**options)`` returns must meet
    :class:`rocketman_core.Executor`.

    :param register: the :class:`Register` callback.
    """


@hookspec
def register_relays(register: Register) -> None:
    """Register the relays this plugin provides.

    Called once, when plugins are loaded. Call ``register(name, factory)`` for
    each relay; the object ``factory(**options)`` returns must meet
    :class:`rocketman_core.Relay`. The factory must not connect: the relay
    connects in ``start``.

    :param register: the :class:`Register` callback.
    """


@hookspec
def rocketman_event_emitted(event: Any) -> None:
    """Called after an event was handed to the storage.

    Runs in the emitting thread, so it must be quick and must not raise; an
    exception is logged and ignored.

    :param event: the :class:`rocketman_core.Event` emitted.
    """


@hookspec
def rocketman_event_handled(event: Any, consumer: str, duration: float) -> None:
    """Called after a consumer handled an event without raising.

    Runs on the worker thread, after the consumer returned.

    :param event: the :class:`rocketman_core.Event`.
    :param consumer: the consumer's identity (``module:qualname``).
    :param duration: how long the consumer ran, in seconds.
    """


@hookspec
def rocketman_event_failed(
    event: Any, consumer: str, error: BaseException, will_retry: bool
) -> None:
    """Called after a consumer raised.

    Runs on the worker thread.

    :param event: the :class:`rocketman_core.Event`.
    :param consumer: the consumer's identity (``module:qualname``).
    :param error: the exception it raised.
    :param will_retry: whether a retry was scheduled (False: dead-lettered).
    """


@hookspec
def rocketman_event_dead_lettered(event: Any, consumer: str | None, reason: str) -> None:
    """Called after a message was put in the dead letters.

    :param event: the :class:`rocketman_core.Event`, or None when the message
        was not a valid envelope.
    :param consumer: the name of the consumer (its subscription) the message
        was for.
    :param reason: the reason stored with it.
    """
