"""Process life: exit drains the queue, fork gives the child working workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

from rocketman_core import Rocketman


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout,
    )


def test_normal_exit_drains_the_memory_queue_first() -> None:
    result = run_python(
        """
        import time
        import rocketman_core as rocketman
        handled = []

        @rocketman.on_event("job")
        def slow(payload):
            time.sleep(0.001)
            handled.append(payload)

        import atexit
        # Registered before rocketman's own handler, so it runs after it.
        atexit.register(lambda: print("handled", len(handled)))
        for n in range(2000):
            rocketman.emit("job", n)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "handled 2000" in result.stdout


def test_exit_counts_what_it_could_not_handle_in_a_warning_and_does_not_hang() -> None:
    started = time.monotonic()
    result = run_python(
        """
        import threading
        import rocketman_core as rocketman
        rocketman.configure(shutdown_timeout=0.5, worker_count=1, latency=0.2)
        stuck = threading.Event()

        @rocketman.on_event("job")
        def blocks(payload):
            stuck.wait(5)

        for n in range(50):
            rocketman.emit("job", n)
        """
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    assert "WARNING" in result.stderr or "not handled" in result.stderr
    line = next(line for line in result.stderr.splitlines() if "not handled" in line)
    assert "49 events not handled" in line or "50 events not handled" in line


def test_a_forked_child_gets_working_workers() -> None:
    result = run_python(
        """
        import os, threading
        import rocketman_core as rocketman
        rocketman.configure(worker_count=2, latency=0.2)
        done = threading.Event()
        seen = []

        @rocketman.on_event("ping")
        def pong(payload):
            seen.append((os.getpid(), payload))
            done.set()

        rocketman.emit("ping", "parent")        # workers now run in the parent
        assert done.wait(10), "parent not handled"
        done.clear()
        pid = os.fork()
        if pid == 0:
            rocketman.emit("ping", "child")     # the child's first emit starts its workers
            ok = done.wait(10) and seen[-1] == (os.getpid(), "child")
            rocketman.shutdown(timeout=5)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        rocketman.emit("ping", "parent again")
        assert done.wait(10), "parent stopped working after fork"
        print("child exit", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout


def test_drain_returns_false_when_time_runs_out() -> None:
    runtime = Rocketman()
    runtime.configure(worker_count=1, latency=0.2)
    release = threading.Event()
    runtime.on_event("waits")(lambda payload: release.wait(10))
    runtime.emit("waits")
    started = time.monotonic()
    assert runtime.drain(timeout=0.3) is False
    assert 0.25 < time.monotonic() - started < 5
    release.set()
    assert runtime.drain(timeout=5) is True
    runtime.shutdown(timeout=5)


def test_a_forked_child_refuses_a_memory_storage_object_of_its_parent() -> None:
    """The parent's queue (and maybe a lock held at fork) is not the child's: a clear error, no duplicates."""
    result = run_python(
        """
        import os, threading
        import rocketman_core as rocketman
        from rocketman_memory import MemoryStorage
        release = threading.Event()
        handled = []
        rocketman.configure(storage=MemoryStorage(), worker_count=1, latency=0.2)

        @rocketman.on_event("job", name="slow")
        def slow(payload):
            handled.append((os.getpid(), payload))
            release.wait(10)

        for n in range(50):
            rocketman.emit("job", n)             # pending in the parent
        pid = os.fork()
        if pid == 0:
            try:
                rocketman.emit("job", "child")
            except rocketman.ConfigurationError as error:
                ok = "forked" in str(error) and "configure()" in str(error)
                # configure() again in the child: a storage of its own
                rocketman.configure(storage=MemoryStorage(), worker_count=1, latency=0.2)
                done = threading.Event()
                rocketman.on_event("child.job", name="child")(lambda payload: done.set())
                rocketman.emit("child.job")
                ok = ok and done.wait(10) and rocketman.drain(timeout=5)
                mine = [p for pid, p in handled if pid == os.getpid()]
                os._exit(0 if ok and mine == [] else 3)
            os._exit(4)
        _, status = os.waitpid(pid, 0)
        release.set()
        assert rocketman.drain(timeout=20)
        print("child exit", os.waitstatus_to_exitcode(status), "parent handled", len(handled))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout, result.stdout + result.stderr
    assert "parent handled 50" in result.stdout
