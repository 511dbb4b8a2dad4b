"""The rocketman command as operators run it (hardening): signals, flags, outages, shadowed modules.

Every test runs the installed console script, or a real Python process, and
synchronises on what the process logs or on the storage, with deadlines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman
from rocketman_core.testing import free_port

ROCKETMAN = str(Path(sys.executable).with_name("rocketman"))

CONSUMERS = '''
import os, time
import rocketman_core as rocketman

@rocketman.on_event("job", name="ops.job")
def job(payload):
    seconds = float(os.environ.get("OPS_HANDLE_SECONDS") or 0)
    if os.environ.get("OPS_STARTED"):
        with open(os.environ["OPS_STARTED"], "a") as started:
            started.write(f"{payload}\\n")
    if seconds:
        time.sleep(seconds)
    with open(os.environ["OPS_OUT"], "a") as out:
        out.write(f"{payload}\\n")
'''

ASYNC_CONSUMERS = '''
import asyncio, os
import rocketman_core as rocketman

@rocketman.on_event("job", name="ops.job")
async def job(payload):
    seconds = float(os.environ.get("OPS_HANDLE_SECONDS") or 0)
    if os.environ.get("OPS_STARTED"):
        with open(os.environ["OPS_STARTED"], "a") as started:
            started.write(f"{payload}\\n")
    if seconds:
        await asyncio.sleep(seconds)
    with open(os.environ["OPS_OUT"], "a") as out:
        out.write(f"{payload}\\n")
'''


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def wait_until(condition: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure()} (waited {timeout}s)")
        time.sleep(0.02)


class Worker:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.log_file = cwd / f"worker-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_file, "wb")  # noqa: SIM115 - open for the life of the process
        self.process = subprocess.Popen([ROCKETMAN, "worker", *args], cwd=cwd, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        wait_until(lambda: text in self.log() or self.process.poll() is not None, timeout,
                   lambda: f"no {text!r} in the log:\n{self.log()[-3000:]}")
        assert text in self.log(), f"the worker exited:\n{self.log()[-3000:]}"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    (tmp_path / "ops_consumers.py").write_text(CONSUMERS)
    (tmp_path / "ops_async.py").write_text(ASYNC_CONSUMERS)
    started: list[Worker] = []

    def start(*args: str, **env: str) -> Worker:
        worker = Worker(list(args), tmp_path, _env(OPS_OUT=str(tmp_path / "out.txt"), **env))
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def redis_url(rocketman_redis_server: RedisServer) -> str:
    return f"{rocketman_redis_server.url}?namespace=ops-{uuid.uuid4().hex[:8]}"


def test_workers_0_is_a_one_line_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([ROCKETMAN, "worker", "anything", "--workers", "0"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rocketman worker: --workers 0 runs no consumer: give 1 or more (a process that only "
        "emits needs no worker command)"]


def test_a_worker_on_memory_without_a_relay_says_no_other_process_can_reach_it(
    workers: Callable[..., Worker],
) -> None:
    worker = workers("ops_consumers", "--workers", "1")
    worker.wait_for_log("rocketman worker started")
    assert "lives in this process: no other process can emit into it" in worker.log()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0


def test_emit_with_redis_down_reports_the_emit_that_failed(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run([ROCKETMAN, "emit", "order.placed", "--storage", url], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "could not store an event" in line and "count" not in line, line


def test_a_module_calling_configure_at_import_does_not_override_the_command_line(
    workers: Callable[..., Worker], tmp_path: Path, redis_url: str,
) -> None:
    """The README's web-app line, imported by a worker: the worker keeps its --storage and --workers."""
    (tmp_path / "ops_webish.py").write_text(
        "import rocketman_core as rocketman\n"
        "rocketman.configure(storage='memory', worker_count=0)   # the web app's line\n"
        "import ops_consumers\n")
    worker = workers("ops_webish", "--storage", redis_url, "--workers", "2")
    worker.wait_for_log("rocketman worker started")
    log = worker.log()
    assert "called rocketman.configure()" in log and "the worker's command line" in log, log
    started = next(line for line in log.splitlines() if "rocketman worker started" in line)
    assert "2 workers" in started and "redis://" in started, started
    producer = Rocketman()
    producer.configure(storage=redis_url, worker_count=0)
    producer.emit("job", "from the web")
    wait_until(lambda: (tmp_path / "out.txt").exists(), 20, lambda: worker.log()[-2000:])
    producer.shutdown(timeout=5)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0


@pytest.mark.parametrize("trial", range(3))
def test_a_burst_of_signals_stops_the_worker_and_it_exits_0(
    workers: Callable[..., Worker], trial: int,
) -> None:
    """300 SIGTERMs 0.2 ms apart: no hang (a handler re-entering a lock), exit 0, not -15."""
    worker = workers("ops_consumers", "--workers", "2", "--latency", "0.2")
    worker.wait_for_log("rocketman worker started")
    for _ in range(300):
        if worker.process.poll() is not None:
            break
        worker.process.send_signal(signal.SIGTERM)
        time.sleep(0.0002)
    try:
        code = worker.process.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker hung after a burst of signals:\n{worker.log()[-3000:]}") from None
    assert code == 0, worker.log()[-3000:]


@pytest.mark.parametrize("module", ["ops_consumers", "ops_async"])
def test_a_second_signal_stops_at_once_and_gives_back_what_it_holds(
    workers: Callable[..., Worker], redis_url: str, module: str, tmp_path: Path,
) -> None:
    """A long consumer holds events; SIGTERM waits for it, a second one stops now and gives them back.

    With async consumers, the five are awaiting together on the loop when
    the signals come.
    """
    started = tmp_path / "started.txt"
    worker = workers(module, "--storage", redis_url, "--workers", "1", "--latency", "0.2",
                     OPS_HANDLE_SECONDS="30", OPS_STARTED=str(started))
    worker.wait_for_log("rocketman worker started")
    app = Rocketman()
    app.configure(storage=redis_url, worker_count=0)
    app.emit_many(("job", n) for n in range(5))
    # Under way: one sync consumer (one worker), or all five coroutines. (A
    # stop that comes between reserve and start gives the batch back unstarted.)
    under_way = 5 if module == "ops_async" else 1

    def running() -> int:
        return len(started.read_text().split()) if started.exists() else 0

    wait_until(lambda: running() >= under_way, 20, lambda: f"{app.stats()}\n{worker.log()}")
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_log("received SIGTERM: stopping")
    stopped_at = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(10) == 0, worker.log()[-3000:]
    assert time.monotonic() - stopped_at < 3, "the second signal did not stop the worker at once"
    assert "received SIGTERM again: stopping now" in worker.log(), worker.log()
    stats = app.stats()
    assert stats["reserved"] == 0 and stats["queued"] == 5, (
        f"what it held must be back in the queue at once, not after its 30 s lease: {stats}")
    app.shutdown(timeout=5)


def test_ctrl_c_in_drain_exits_now_not_after_shutdown_timeout(tmp_path: Path) -> None:
    script = tmp_path / "drainer.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import rocketman_core as rocketman
        rocketman.configure(worker_count=1, latency=0.2, shutdown_timeout=30)
        rocketman.on_event("slow")(lambda payload: time.sleep(0.2))
        rocketman.emit_many(("slow", n) for n in range(200))
        print("draining", flush=True)
        rocketman.drain()
    """))
    # Ctrl-C as in a terminal: a test run started in the background inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "draining"
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    try:
        _, errors = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the script waited out shutdown_timeout after Ctrl-C") from None
    assert time.monotonic() - interrupted < 5, "Ctrl-C in drain() waited for shutdown_timeout"
    assert "KeyboardInterrupt" in errors
    assert "events not handled, now lost" in errors, errors


def test_a_redis_py_of_the_applications_own_does_not_replace_redis_py(
    workers: Callable[..., Worker], tmp_path: Path, redis_url: str,
) -> None:
    """A redis.py in the working directory: the worker still uses redis-py (imported before it)."""
    (tmp_path / "redis.py").write_text("raise RuntimeError('this is the application redis.py')\n")
    worker = workers("ops_consumers", "--storage", redis_url, "--workers", "1")
    worker.wait_for_log("rocketman worker started")
    assert "application redis.py" not in worker.log()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(20) == 0, worker.log()[-3000:]
