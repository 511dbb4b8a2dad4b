"""The Redis storage's push from a coroutine: PUSH or LPUSH on redis.asyncio, a client per event loop.

A redis.asyncio connection belongs to the event loop that opened it, and an
application may push from several loops over its life (pytest-asyncio makes
one per test) and from several threads at once, each running its own. So each
loop gets a client of its own at its first push, built from the sync client's
connection settings (host or socket, db, credentials, TLS, timeouts), and
closed in that loop by an async generator parked there at the first push.
The loop closes that generator when it shuts its async generators down, as
``asyncio.run``, ``asyncio.Runner`` and pytest-asyncio do before closing it,
or as soon as the storage drops it (the loop's finalizer of async generators,
PEP 525, schedules its ``aclose()`` in the loop; a closed loop does nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from redis import connection as sync_connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._wire import MAX_BATCH, _pack

if sys.version_info >= (3, 11):
    from asyncio import timeout as _deadline
else:  # redis-py requires async-timeout below 3.11.3
    from async_timeout import timeout as _deadline  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = ["AsyncPushes"]

T = TypeVar("T")

# redis.asyncio's pool refuses the 101st connection by default (it does not
# wait for one): allow as many as tasks push at once. Redis's own maxclients
# (10,000 by default) bounds them anyway.
_MAX_CONNECTIONS = 10_000

# Keys of a sync pool's connection_kwargs that hold objects of the sync
# client (its retry policy, parser, events, maintenance notifications), not
# settings: an async connection makes its own.
_SYNC_OBJECTS = frozenset({
    "retry", "parser_class", "redis_connect_func", "event_dispatcher", "himport_registry",
    "maint_notifications_config", "maint_notifications_pool_handler", "maintenance_state",
    "maintenance_notification_hash", "orig_host_address", "orig_socket_timeout",
    "orig_socket_connect_timeout", "oss_cluster_maint_notifications_handler", "parser",
})

# What a forked child inherited, kept there untouched for its whole life:
# closing or collecting it would act on the parent's loop (its self-pipe, the
# epoll instance the two processes share), and warn about open sockets.
_inherited: list[Any] = []


async def _close_with_loop(pool: Any) -> AsyncIterator[None]:
    """Parked in a loop at its first push; the loop's shutdown of async generators closes the pool."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            await pool.disconnect()


def _async_settings(module: Any, pool: Any) -> tuple[Any, dict[str, Any]]:
    """The redis.asyncio connection class and keyword arguments matching a sync pool's.

    Without the socket timeout: :class:`AsyncPushes` bounds each exchange
    itself (see :meth:`AsyncPushes.call`).
    """
    sync_class = pool.connection_class
    if issubclass(sync_class, sync_connection.UnixDomainSocketConnection):
        connection_class = module.UnixDomainSocketConnection
    elif issubclass(sync_class, sync_connection.SSLConnection):
        connection_class = module.SSLConnection
    else:
        connection_class = module.Connection
    accepted: set[str] = set()
    for cls in connection_class.__mro__:
        init = vars(cls).get("__init__")
        if init is not None and cls is not object:
            accepted.update(inspect.signature(init).parameters)
    kwargs = {name: value for name, value in pool.connection_kwargs.items()
              if name in accepted and name not in _SYNC_OBJECTS}
    kwargs["socket_timeout"] = None
    return connection_class, kwargs


async def _within(seconds: float | None, step: Awaitable[T]) -> T:
    """Await ``step`` for at most ``seconds`` (None: no bound); past it, raise as redis-py's socket timeout would.

    The deadline cancels what it interrupts, and redis-py disconnects a
    connection whose send or read is cancelled: none is reused half read.
    """
    try:
        async with _deadline(seconds):
            return await step
    except asyncio.TimeoutError:
        raise RedisTimeoutError(f"no answer from Redis within {seconds} s") from None


async def _send_and_read(connection: Any, command: Any) -> Any:
    await connection.send_packed_command(command, check_health=False)
    return await connection.read_response()


class AsyncPushes:
    """LPUSHes onto one key from coroutines of any event loop, each loop on a client of its own.

    Thread-safe. A command that fails on a dead connection is sent once more
    on a fresh one, as the sync wire does (see :class:`~._wire.Wire`): a
    frozen or unreachable server fails a push after at most about
    ``2 * (connect_timeout + socket_timeout)``.

    :param pool: the sync client's connection pool, whose settings the async
        connections copy.
    :param key: the list the pushes go to.
    """

    def __init__(self, pool: Any, key: str) -> None:
        self._pool = pool
        self._key = key
        settings = pool.connection_kwargs
        #: The bound of one exchange on a connected connection, and of one
        #: that may have to connect first (the sync client's timeouts).
        reply, connect = settings.get("socket_timeout"), settings.get("socket_connect_timeout")
        self._reply_within: float | None = reply
        self._connect_within = None if reply is None or connect is None else reply + connect
        self._settings: tuple[Any, dict[str, Any]] | None = None
        # Read without the lock (one dict lookup per push); changed under it.
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}
        # Each loop's connections not in use now, taken from its client's pool once.
        self._idle: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}
        self._lock = threading.Lock()

    async def lpush(self, elements: Sequence[bytes]) -> int:
        """LPUSH ``elements`` (at most MAX_BATCH) in one command; return the list's length."""
        return int(await self.call("LPUSH", self._key, *elements))

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply; an error reply raises (ResponseError).

        On a connection of the loop's own, used as it is: the client's
        ``execute_command`` takes it from the pool and gives it back, wraps
        it in a retry policy and records metrics, which with 100 tasks
        pushing at once cost more than the round trip (0.58x of bare
        connections). A connection stays in use by one task at a time.

        One deadline bounds the whole exchange, the socket timeout (plus the
        connect timeout when it must connect first). redis-py's own socket
        timeout would cost a task per send (``asyncio.wait_for`` on 3.11)
        and a timer per read.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = await self._open(loop)
        idle = self._idle[loop]
        connection = idle.pop() if idle else await _within(
            self._connect_within, client.connection_pool.get_connection())
        command = _pack(connection, args)
        try:
            reply = await self._exchange(connection, command)
        except (RedisConnectionError, RedisTimeoutError):
            # Disconnected; once more, on the same one connected anew (a
            # restarted server), as the sync wire does.
            reply = await self._exchange(connection, command)
        except ResponseError:
            idle.append(connection)  # an error reply, read in full: the exchange completed
            raise
        # Back for the next push only when its exchange completed: a push
        # cancelled or failed meanwhile leaves it disconnected, in the pool,
        # which closes it with the rest.
        idle.append(connection)
        return reply

    async def _exchange(self, connection: Any, command: Any) -> Any:
        """Send ``command`` and read its reply, within the socket timeout (and the connect one if need be)."""
        seconds = self._reply_within if connection.is_connected else self._connect_within
        return await _within(seconds, _send_and_read(connection, command))

    async def lpush_many(self, elements: Sequence[bytes]) -> list[int]:
        """LPUSH ``elements`` in order, MAX_BATCH per command, pipelined in one round trip."""
        if len(elements) <= MAX_BATCH:
            return [await self.lpush(elements)]
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = await self._open(loop)
        try:
            return await self._pipelined(client, elements)
        except (RedisConnectionError, RedisTimeoutError):
            return await self._pipelined(client, elements)

    async def _pipelined(self, client: Any, elements: Sequence[bytes]) -> list[int]:
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(elements), MAX_BATCH):
            pipe.execute_command("LPUSH", self._key, *elements[start:start + MAX_BATCH])
        return [int(length) for length in await _within(self._connect_within, pipe.execute())]

    async def _open(self, loop: asyncio.AbstractEventLoop) -> Any:
        """This loop's client, made at its first push (and its closer parked in the loop)."""
        module = sys.modules.get("redis.asyncio")
        if module is None:  # some 50 ms of imports: not on the loop
            module = await asyncio.to_thread(importlib.import_module, "redis.asyncio")
        with self._lock:
            client = self._clients.get(loop)
            if client is not None:
                return client
            # Forget the clients of closed loops: their pools closed with them
            # (or, a loop closed without shutting down, can no longer be closed).
            live = [known for known in self._clients if not known.is_closed()]
            self._clients = {known: self._clients[known] for known in live}
            self._idle = {known: self._idle[known] for known in live if known in self._idle}
            self._closers = {known: self._closers[known] for known in live if known in self._closers}
            if self._settings is None:
                self._settings = _async_settings(module, self._pool)
            connection_class, kwargs = self._settings
            pool = module.ConnectionPool(connection_class=connection_class,
                                         max_connections=_MAX_CONNECTIONS, **kwargs)
            client = module.Redis(connection_pool=pool)
            self._idle[loop] = []
            closer = None
            # Only a loop that finalizes async generators closes it (every asyncio loop does).
            if sys.get_asyncgen_hooks().finalizer is not None:
                closer = self._closers[loop] = _close_with_loop(pool)
            self._clients[loop] = client
        if closer is not None:
            await closer.__anext__()  # runs to its yield at once: no other task comes between
        return client

    def close(self) -> None:
        """Forget every loop's client: each open loop disconnects its pool soon, in the loop.

        Dropping a closer is what does it (see the module's docstring). Never
        blocks and never raises; the clients of closed loops are just dropped,
        and a loop that does not run again disconnects when it shuts down.
        """
        with self._lock:
            self._clients, self._closers, self._idle = {}, {}, {}

    def forget_in_child(self) -> None:
        """In a forked child: never touch the parent's clients again; each loop gets a new one."""
        _inherited.append((self._clients, self._closers, self._idle))
        self._clients, self._closers, self._idle = {}, {}, {}
        self._lock = threading.Lock()
