"""A real server process for tests: started on a free port, stopped, killed, restarted.

Tests of a backend run against its real server, never a fake: each test
session (or test) starts its own on a free port, so it is isolated from
whatever the machine runs and can stop, kill, freeze and restart it to test
faults. A missing binary is an error that says how to install it, never a
skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["ServerMissing", "ServerProcess", "free_port"]

_Server = TypeVar("_Server", bound="ServerProcess")


class ServerMissing(RuntimeError):
    """The server's binary is not installed: the tests that need it cannot run."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server process of the tests' own, listening on ``host:port``.

    ``args`` are the binary's arguments, in which ``{host}``, ``{port}`` and
    ``{directory}`` (a temporary directory of the server's own, for its data)
    are replaced::

        server = ServerProcess("my-server", ["--listen", "{host}:{port}", "--data", "{directory}"],
                               install_hint="apt-get install my-server")
        with server:
            ...  # clients connect to server.host, server.port
            server.restart()

    The binary's output goes to :attr:`log`, whose tail a failure to start
    shows. Not thread-safe: one test drives it.

    :param binary: the executable's name (looked up on ``PATH``) or path.
    :param args: its arguments, with the placeholders above.
    :param port: the port; a free one by default. It stays the same across
        :meth:`restart`, so clients reconnect to the same address.
    :param host: the address it listens on.
    :param install_hint: how to install the binary, for :class:`ServerMissing`.
    :param binary_env: an environment variable that may give the binary's path.
    :raises ServerMissing: when the binary is not installed.
    """

    def __init__(self, binary: str, args: Sequence[str] = (), *, port: int | None = None,
                 host: str = "127.0.0.1", install_hint: str = "",
                 binary_env: str | None = None) -> None:
        found = (os.environ.get(binary_env) if binary_env else None) or shutil.which(binary)
        if found is None:
            hint = f" Install it ({install_hint})" if install_hint else " Install it"
            variable = f" or set {binary_env} to its path" if binary_env else ""
            raise ServerMissing(
                f"{binary} is not installed, and these tests need a real server.{hint}{variable}."
            )
        self.binary = found
        self.name = Path(binary).name
        self.args = tuple(args)
        self.host = host
        self.port = port or free_port(host)
        self.directory = Path(tempfile.mkdtemp(prefix=f"rocketman-{self.name}-"))
        self.log = self.directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line: the binary and its arguments, placeholders replaced."""
        values = {"host": self.host, "port": str(self.port), "directory": str(self.directory)}
        return [self.binary, *(arg.format(**values) for arg in self.args)]

    def start(self, timeout: float = 10.0) -> None:
        """Start the server; return once :meth:`ready`.

        :raises RuntimeError: the process exited, or was not ready within
            ``timeout`` seconds (it is then killed); the message has the
            log's tail.
        """
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"{self.name} exited at start (code {code}):\n{self._tail()}")
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not accept connections on {self.host}:"
                                   f"{self.port} within {timeout}s:\n{self._tail()}")
            time.sleep(0.02)

    def ready(self) -> bool:
        """Whether the server accepts TCP connections now; a subclass may ask more (a PING)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds) and reap it.

        Idempotent; a frozen server (:meth:`freeze`) is thawed first, so
        that it can handle the SIGTERM.
        """
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it. Idempotent."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP the server: its connections stay open, nothing answers (until :meth:`thaw`)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen server."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the server if it runs, then start it again on the same port and directory."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete its directory. Idempotent."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name} on {self.host}:{self.port} {state}>"
