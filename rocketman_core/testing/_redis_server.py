"""A real ``redis-server`` for tests: started on a free port, stopped, restarted.

Tests of Redis behaviour run against a real server, never a fake. Each test
session starts its own, so tests are isolated from the machine's Redis and
can stop and restart it to test faults. A missing binary is an error that
says how to install it, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "RedisServerMissing", "free_port"]


class RedisServerMissing(RuntimeError):
    """No ``redis-server`` binary: the Redis tests cannot run."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process of the test session's own.

    :param appendonly: keep an append-only file (fsync every write), so that a
        restart keeps what the server acknowledged.
    :param port: the port; a free one by default. It stays the same across
        :meth:`restart`, so clients reconnect to the same URL.
    """

    def __init__(self, *, appendonly: bool = True, port: int | None = None) -> None:
        binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing(
                "redis-server is not installed, and the Redis tests need a real server. "
                "Install it (Debian/Ubuntu: `apt-get install redis-server`; macOS: "
                "`brew install redis`) or set REDIS_SERVER to its path."
            )
        self.binary = binary
        self.appendonly = appendonly
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="rocketman-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def ping(self) -> bool:
        """Whether the server answers PING now (a raw RESP exchange, no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, which flushes the append-only file) and wait."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port, with the same data directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
