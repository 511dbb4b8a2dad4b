"""A real ``redis-server`` for tests: started on a free port, stopped, restarted.

For the tests of every Redis distribution (this relay, the Redis storage,
the core's tests that cross into Redis, the benchmarks): it lives here, in
the distribution the others depend on, so that the core names no backend
and no distribution depends on one it should not. Built on the core's
:class:`rocketman_core.testing.ServerProcess`.

The pytest fixture ``rocketman_redis_server`` (one server for the test
session) comes from :mod:`rocketman_relay_redis.pytest_plugin`, registered
as a ``pytest11`` entry point of this distribution. This module does not
need pytest, nor redis-py: it speaks the one command it needs, PING, itself.
"""

from __future__ import annotations

import socket

from rocketman_core.testing import ServerMissing, ServerProcess

__all__ = ["RedisServer", "RedisServerMissing"]

_INSTALL = "Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`"


class RedisServerMissing(ServerMissing):
    """No ``redis-server`` binary: the Redis tests cannot run."""


class RedisServer(ServerProcess):
    """One ``redis-server`` process of the tests' own, on 127.0.0.1.

    :param appendonly: keep an append-only file (fsync every write), so that a
        restart keeps what the server acknowledged.
    :param port: the port; a free one by default. It stays the same across
        :meth:`restart`, so clients reconnect to the same URL.
    :raises RedisServerMissing: when ``redis-server`` is not installed (nor
        named by ``REDIS_SERVER``).
    """

    def __init__(self, *, appendonly: bool = True, port: int | None = None) -> None:
        args = [
            "--port", "{port}",
            "--bind", "{host}",
            "--dir", "{directory}",
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", "always",
        ]
        try:
            super().__init__("redis-server", args, port=port, install_hint=_INSTALL,
                             binary_env="REDIS_SERVER")
        except ServerMissing as missing:
            raise RedisServerMissing(str(missing)) from None
        self.appendonly = appendonly

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    def ready(self) -> bool:
        """Whether the server answers PING now (it accepts connections before it loaded its data)."""
        return self.ping()

    def ping(self) -> bool:
        """Whether the server answers PING now (a raw RESP exchange, no client library)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
