"""The storage's way to talk to Redis: one connection per thread, few layers.

redis-py's ``Redis.execute_command`` takes a connection from the pool and
gives it back on every command, and records metrics around it: more CPU than
the round trip itself on a local server, all of it under the GIL that the
worker threads share. The storage sends its few commands itself, on a
connection each thread keeps (taken from the client's pool, given back when
the thread ends), and keeps redis-py for what it is good at: connecting
(TCP, TLS, unix sockets, authentication) and parsing replies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import ConnectionPool

try:  # hiredis packs a command in a seventh of the time redis-py's packer takes
    from hiredis import pack_command as _pack_fast
except ImportError:  # pragma: no cover - hiredis is optional
    _pack_fast = None  # type: ignore[assignment]
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["MAX_BATCH", "Script", "Wire"]

#: The most values the storage puts in one command or script call (Lua's
#: unpack() takes at most a few thousand); bigger batches are split.
MAX_BATCH = 1000

# Bumped in a forked child: a connection the parent opened must not be used
# (the two processes would share its socket).
_forks = 0
_pool_lock = threading.Lock()


def _forked() -> None:
    global _forks, _pool_lock
    _forks += 1
    _pool_lock = threading.Lock()  # a parent thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Script:
    """A Lua script and its SHA-1, run with EVALSHA (loaded on first use, and after a restart)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class _Held:
    """The connection one thread holds; back to the pool when the thread ends."""

    __slots__ = ("__weakref__", "connection", "forks", "pid", "pool")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.forks = _forks
        self.pid = os.getpid()
        self.connection: Any = None
        # Connects at once (redis-py 8), so it may raise: __del__ must cope.
        self.connection = pool.get_connection()

    def __del__(self) -> None:
        # A thread-local value dies with its thread: give the connection back,
        # in the process that took it only. A forked child collects what the
        # parent's threads held in fork callbacks that may run before ours
        # bumps _forks (so the pid, not the counter): giving it back there
        # would reset the pool under a lock a parent thread may have held.
        if self.pid == os.getpid() and self.connection is not None:
            # At interpreter exit the pool may be half torn down already.
            with contextlib.suppress(Exception):
                self.pool.release(self.connection)


def _pack(connection: Any, args: tuple[Any, ...]) -> Any:
    """The bytes of one command: hiredis's packer when it is installed, else the connection's."""
    if _pack_fast is not None:
        return [_pack_fast(args)]  # send_packed_command takes a list of chunks
    return connection.pack_command(*args)


def _pack_many(connection: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    if _pack_fast is not None:
        return [b"".join(map(_pack_fast, commands))]
    return connection.pack_commands(commands)


class Wire:
    """Commands on this thread's connection, with one retry on a fresh connection.

    The retry reconnects a connection that died with a restarted server. A
    command whose answer was lost may so run twice: every command the
    storage sends is safe to repeat under at-least-once delivery (a
    duplicate push, or a lease nobody holds, which expires).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool: ConnectionPool = client.connection_pool
        self._pool_forks = _forks
        self._own_pool = False
        self._local = threading.local()
        self._sources: dict[str, str] = {}  # sha -> source of the scripts run so far

    def connection(self) -> Any:
        """This thread's connection (taken from the pool at its first use)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.forks != _forks:
            held = self._local.held = _Held(self._pool())
        return held.connection

    def _pool(self) -> ConnectionPool:
        """The pool of this process: in a forked child, one of its own, with the same settings.

        redis-py resets a pool in a child under the pool's lock, which a
        parent thread may have held at the fork: the child would hang there.
        """
        if self._pool_forks != _forks:
            with _pool_lock:
                if self._pool_forks != _forks:
                    old = self.pool
                    self.pool = ConnectionPool(connection_class=old.connection_class,
                                               max_connections=old.max_connections,
                                               **old.connection_kwargs)
                    self._pool_forks, self._own_pool = _forks, True
        return self.pool

    def close(self) -> bool:
        """Close the pool this wire made (in a forked child); return whether it made one."""
        if self._own_pool:
            self.pool.disconnect()
        return self._own_pool

    def call(self, *args: Any) -> Any:
        """Send one command and return its parsed reply; Redis errors raise ResponseError."""
        connection = self.connection()
        packed = _pack(connection, args)
        try:
            connection.send_packed_command(packed, check_health=False)
            return connection.read_response()
        except (RedisConnectionError, RedisTimeoutError):
            connection.disconnect()
        connection.send_packed_command(packed, check_health=False)
        return connection.read_response()

    def call_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send several commands in one round trip; return every reply.

        Every reply is read before an error reply raises (the first one), so
        the connection stays in step. EVALSHA of a script the server does not
        know (a new or restarted server) is loaded and sent again, alone.
        """
        connection = self.connection()
        for attempt in (1, 2):
            try:
                connection.send_packed_command(_pack_many(connection, commands), check_health=False)
                replies = [self._reply(connection) for _ in commands]
                break
            except (RedisConnectionError, RedisTimeoutError):
                connection.disconnect()
                if attempt == 2:
                    raise
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError) and commands[index][0] == "EVALSHA":
                source = self._sources.get(commands[index][1])
                if source is not None:
                    self.call("SCRIPT", "LOAD", source)
                    replies[index] = self.call(*commands[index])
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    @staticmethod
    def _reply(connection: Any) -> Any:
        try:
            return connection.read_response()
        except ResponseError as error:  # read in full: the next reply follows
            return error

    def known(self, script: Script) -> None:
        """Remember ``script``, so that :meth:`call_many` can load it when the server lacks it."""
        self._sources.setdefault(script.sha, script.source)

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run ``script`` with EVALSHA, loading it first if the server does not know it."""
        self._sources.setdefault(script.sha, script.source)
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A new or restarted server: load it once, then run it.
            self.call("SCRIPT", "LOAD", script.source)
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def block_move(self, source: str, destination: str, seconds: float, read_margin: float,
                   on_blocked: Any) -> Any:
        """BLMOVE ``source`` -> ``destination``, blocking up to ``seconds`` (see :meth:`block_pop`)."""
        return self._block(("BLMOVE", source, destination, "RIGHT", "LEFT", f"{seconds:.3f}"),
                           seconds, read_margin, on_blocked)[0]

    def block_pop(self, keys: Sequence[str], seconds: float, read_margin: float,
                  on_blocked: Any) -> Any:
        """BLPOP the first of ``keys`` that has an element, blocking up to ``seconds``.

        Sends ``CLIENT ID`` in the same round trip and calls
        ``on_blocked(client_id)`` (None when an ACL forbids CLIENT ID) while
        the BLPOP waits, so another thread can end the wait with CLIENT
        UNBLOCK. Waits for the answer at most ``seconds + read_margin``.
        """
        return self._block(("BLPOP", *keys, f"{seconds:.3f}"), seconds, read_margin, on_blocked)[0]

    def block_pop_then_run(self, keys: Sequence[str], seconds: float, read_margin: float,
                           on_blocked: Any, script: Script, script_keys: Sequence[str],
                           args: Sequence[Any]) -> Any:
        """:meth:`block_pop`, with ``script`` sent behind it: Redis runs it the moment the BLPOP ends.

        A blocked client's next command waits in the server's buffer and runs
        as soon as the block ends (popped, timed out or unblocked), so the
        script needs no round trip of its own. Returns the script's reply.
        """
        self._sources.setdefault(script.sha, script.source)
        then = ("EVALSHA", script.sha, len(script_keys), *script_keys, *args)
        _, reply = self._block(("BLPOP", *keys, f"{seconds:.3f}"), seconds, read_margin,
                               on_blocked, then)
        if isinstance(reply, NoScriptError):  # a new or restarted server: load it, run it
            return self.run(script, script_keys, args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def _block(self, command: tuple[Any, ...], seconds: float, read_margin: float,
               on_blocked: Any, then: tuple[Any, ...] | None = None) -> tuple[Any, Any]:
        """Send CLIENT ID, the blocking ``command`` (and ``then``); their replies but the id's.

        ``then``'s reply is returned as it came, an error reply included (as
        an exception object, not raised): the connection stays in step.
        """
        connection = self.connection()
        commands = [("CLIENT", "ID"), command] if then is None else [("CLIENT", "ID"), command, then]
        try:
            connection.send_packed_command(_pack_many(connection, commands), check_health=False)
            try:
                client_id: int | None = int(connection.read_response())
            except ResponseError:
                client_id = None
            on_blocked(client_id)
            if not connection.can_read(timeout=seconds + read_margin):
                raise RedisTimeoutError(
                    f"Redis did not answer a {command[0]} of {seconds:.1f}s within "
                    f"{read_margin:.1f}s more")
            if then is None:
                return connection.read_response(), None
            popped = self._reply(connection)
            reply = self._reply(connection)
            if isinstance(popped, ResponseError):
                raise popped
            return popped, reply
        except BaseException:
            # Whatever the failure, the reply may still come: never reuse the connection.
            connection.disconnect()
            raise
