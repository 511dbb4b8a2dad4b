"""The ``rocketman`` command, run as a user runs it: the installed console script, in a subprocess.

Exit codes are what a shell script relies on: 0 success, 1 the operation
failed, 2 bad usage or configuration; errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman

TIMEOUT = 30
COMMANDS = ["worker", "demo", "plugins", "emit", "stats", "subscriptions", "dead-letters"]


def rocketman(script: str, *args: str, env: dict[str, str], cwd: Path | None = None,
              timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``rocketman ARGS`` to its end."""
    return subprocess.run([script, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The command failed with ``code`` and said why in one line on stderr; return it."""
    assert done.returncode == code, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def env() -> dict[str, str]:
    """This environment without ROCKETMAN_* settings and without PYTHONPATH (no test plugins)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("ROCKETMAN_") and key != "PYTHONPATH"}


# -- help and usage errors -------------------------------------------------------


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_of_every_command_exits_0(rocketman_console_script: str, env: dict[str, str],
                                       command: str) -> None:
    done = rocketman(rocketman_console_script, *filter(None, [command]), "--help", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: rocketman {command}".rstrip())
    if not command:
        for name in COMMANDS:
            assert name in done.stdout


def test_no_command_shows_usage_and_exits_2(rocketman_console_script: str, env: dict[str, str]) -> None:
    done = rocketman(rocketman_console_script, env=env)
    assert done.returncode == 2
    assert "usage: rocketman" in done.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["stats", "--frobnicate"], "rocketman stats: unrecognized arguments: --frobnicate"),
    (["worker", "some_module", "--workers", "-3"], "rocketman worker: argument --workers: must be 0 or more"),
    (["dead-letters", "shred"], "rocketman dead-letters: argument action: invalid choice: 'shred'"),
    (["launch"], "rocketman: argument COMMAND: invalid choice: 'launch'"),
])
def test_a_bad_flag_is_one_line_and_exit_2(rocketman_console_script: str, env: dict[str, str],
                                           args: list[str], expected: str) -> None:
    line = assert_one_line_error(rocketman(rocketman_console_script, *args, env=env), 2)
    assert line.startswith(expected)


@pytest.mark.parametrize("args", [
    ["stats"], ["emit", "x"], ["dead-letters", "list"], ["worker", "some_module"],
])
def test_an_unknown_storage_is_one_line_naming_the_installed_ones(
    rocketman_console_script: str, env: dict[str, str], args: list[str],
) -> None:
    done = rocketman(rocketman_console_script, *args, "--storage", "memroy", env=env)
    line = assert_one_line_error(done, 2)
    assert "'memroy'" in line
    assert "memory (from rocketman-memory" in line
    assert "Did you mean 'memory'?" in line


def test_selecting_a_broken_plugins_storage_shows_its_error(
    rocketman_console_script: str, rocketman_test_plugins: Any,
) -> None:
    env = rocketman_test_plugins.env("rocketman-broken-plugin")
    done = rocketman(rocketman_console_script, "stats", "--storage", "broken", env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # Loading logs the broken plugin's warning; the command's own message is the last line.
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("rocketman stats: ")
    assert "rocketman-broken-plugin 0.0.1" in line
    assert "rocketman_no_such_dependency" in line


# -- demo ------------------------------------------------------------------------------


def test_demo_shows_events_flowing(rocketman_console_script: str, env: dict[str, str]) -> None:
    started = time.monotonic()
    done = rocketman(rocketman_console_script, "demo", env=env)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("send_welcome   got") == 1
    assert "sync_crm       succeeds on attempt 2" in out
    assert "sync_crm was called 3 times, send_welcome once" in out
    assert "dead letter: invoice.paid" in out
    assert "replayed 1" in out
    assert "booked invoice 7" in out
    assert "20,000 handled in" in out and "events/s" in out
    assert elapsed < 20, f"the demo took {elapsed:.1f}s"


# -- commands that need a shared storage --------------------------------------------------


@pytest.mark.parametrize("args", [["emit", "x"], ["stats"], ["dead-letters", "list"]])
def test_a_process_local_storage_is_refused_by_commands_that_reach_other_processes(
    rocketman_console_script: str, env: dict[str, str], args: list[str],
) -> None:
    done = rocketman(rocketman_console_script, *args, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == "", "nothing was emitted nor counted"
    assert "shared storage" in done.stderr.strip().splitlines()[-1]


def test_emit_with_a_payload_that_is_not_json_is_one_line(
    rocketman_console_script: str, env: dict[str, str],
) -> None:
    done = rocketman(rocketman_console_script, "emit", "x", "--payload", "{oops", env=env)
    assert "--payload is not valid JSON" in assert_one_line_error(done, 2)


# -- worker ---------------------------------------------------------------------------------


CONSUMERS_MODULE = '''
import logging

import rocketman_core as rocketman

logger = logging.getLogger("cli_worker_consumers")


@rocketman.on_event("sample.relayed")
def pong(payload):
    logger.info("pong handled n=%s", payload["n"])
'''


class RunningCommand:
    """A long-running command whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_for_line(self, text: str, timeout: float = 15) -> str:
        """The first stderr line containing ``text``; fail if none comes within ``timeout``."""
        for line in self.lines:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                new = self._new.get(timeout=left)
            except queue.Empty:
                break
            if new is None:
                break
            self.lines.append(new)
            if text in new:
                return new
        raise AssertionError(f"no line with {text!r} within {timeout}s; stderr so far:\n"
                             + "\n".join(self.lines))

    def finish(self, timeout: float) -> int:
        """Wait for the exit (collecting the rest of stderr); kill and fail after ``timeout``."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running {timeout}s after the signal:\n"
                                 + "\n".join(self.lines)) from None
        while (rest := self._new.get(timeout=5)) is not None:
            self.lines.append(rest)
        return code


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_worker_runs_consumers_until_signalled_then_exits_0(
    rocketman_console_script: str, rocketman_test_plugins: Any, tmp_path: Path,
    stop_signal: signal.Signals,
) -> None:
    (tmp_path / "cli_worker_consumers.py").write_text(CONSUMERS_MODULE)
    # The sample plugin's relay emits three events into the worker's memory storage.
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    worker = RunningCommand(
        [rocketman_console_script, "worker", "cli_worker_consumers", "--workers", "2",
         "--latency", "0.2", "--relay", "sample://?count=3"],
        env=env, cwd=tmp_path,
    )
    try:
        started = worker.wait_for_line("rocketman worker started")
        assert "storage memory" in started
        assert "2 workers" in started
        assert "relays sample://?count=3" in started
        assert "cli_worker_consumers:pong on 'sample.relayed'" in started
        for n in range(3):
            worker.wait_for_line(f"pong handled n={n}")
        signalled = time.monotonic()
        worker.process.send_signal(stop_signal)
        code = worker.finish(timeout=10)
        took = time.monotonic() - signalled
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
    assert code == 0, "\n".join(worker.lines)
    assert took < 5, f"the worker took {took:.1f}s to stop"
    assert any(f"received {stop_signal.name}" in line for line in worker.lines)
    assert any("rocketman worker stopped" in line for line in worker.lines)
    assert not any("Traceback" in line for line in worker.lines), "\n".join(worker.lines)


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("cli_worker_missing", None, "ModuleNotFoundError"),
    ("cli_worker_raising", "raise RuntimeError('DATABASE_URL is not set')\n",
     "RuntimeError: DATABASE_URL is not set"),
])
def test_worker_with_a_module_that_does_not_import_is_one_line_and_exit_2(
    rocketman_console_script: str, env: dict[str, str], tmp_path: Path,
    module: str, source: str | None, expected: str,
) -> None:
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    done = rocketman(rocketman_console_script, "worker", module, env=env, cwd=tmp_path)
    line = assert_one_line_error(done, 2)
    assert line.startswith(f"rocketman worker: cannot import '{module}'")
    assert expected in line


# -- credentials ----------------------------------------------------------------------------


SECRET_URL = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("given_by", ["flag", "environment"])
def test_a_password_in_the_storage_url_never_appears_in_output(
    rocketman_console_script: str, env: dict[str, str], given_by: str, debug: bool,
) -> None:
    args = ["stats", *(["--debug"] if debug else [])]
    if given_by == "flag":
        args += ["--storage", SECRET_URL]
    else:
        env = {**env, "ROCKETMAN_STORAGE": SECRET_URL}
    done = rocketman(rocketman_console_script, *args, env=env)
    assert done.returncode in (1, 2), f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "s3cret" not in done.stdout
    assert "s3cret" not in done.stderr
    if not debug:
        # Unreachable (or, without rocketman-redis, unknown): either way one line.
        line = assert_one_line_error(done, done.returncode)
        assert line.startswith("rocketman stats: ")
        assert "127.0.0.1:1" in line or "'redis'" in line


# -- against a real redis-server ---------------------------------------------------------------
#
# Each test uses a namespace of its own on the session's server, so they share
# no key; the Redis storage (rocketman-redis) must be installed.

SHIPPING_MODULE = '''
import logging

import rocketman_core as rocketman

logger = logging.getLogger("cli_worker_shipping")


@rocketman.on_event("order.placed")
def ship(payload, event):
    logger.info("shipped order=%s id=%s", payload["order"], event.id)
'''


@pytest.fixture
def redis_storage_url(rocketman_redis_server: Any) -> Iterator[str]:
    """A Redis storage URL on the session's server, with a fresh namespace; its keys go afterwards."""
    import redis

    namespace = f"cli-{uuid.uuid4().hex[:12]}"
    yield f"{rocketman_redis_server.url}?namespace={namespace}"
    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        keys = list(client.scan_iter(match=f"{{{namespace}}}*"))
        if keys:
            client.delete(*keys)


def stats_of(script: str, url: str, env: dict[str, str]) -> dict[str, int]:
    """What ``rocketman stats --json`` counts in the storage ``url``."""
    done = rocketman(script, "stats", "--json", "--storage", url, env=env)
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = json.loads(done.stdout)
    return counts


def start_worker(script: str, module: str, env: dict[str, str], cwd: Path, *args: str) -> RunningCommand:
    worker = RunningCommand([script, "worker", module, "--workers", "2", "--latency", "0.2", *args],
                            env=env, cwd=cwd)
    worker.wait_for_line("rocketman worker started")
    return worker


def stop_worker(worker: RunningCommand) -> list[str]:
    """SIGTERM the worker; it exits 0 within a few seconds; return its stderr lines."""
    try:
        worker.process.send_signal(signal.SIGTERM)
        code = worker.finish(timeout=10)
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
    assert code == 0, "\n".join(worker.lines)
    return worker.lines


def test_emit_from_the_shell_is_counted_then_handled_by_a_worker_process(
    rocketman_console_script: str, env: dict[str, str], redis_storage_url: str, tmp_path: Path,
) -> None:
    emitted = rocketman(rocketman_console_script, "emit", "order.placed", "--payload", '{"order": 7}',
                        "--storage", redis_storage_url, env=env)
    assert emitted.returncode == 0, emitted.stderr
    event_id = emitted.stdout.strip()
    assert event_id and len(emitted.stdout.splitlines()) == 1, "stdout is the event id alone"
    # No worker ever ran, so no subscription exists yet: the event is parked for them.
    assert stats_of(rocketman_console_script, redis_storage_url, env) == {
        "queued": 0, "reserved": 0, "delayed": 0, "dead": 0, "parked": 1, "dropped": 0,
    }
    human = rocketman(rocketman_console_script, "stats", "--storage", redis_storage_url, env=env)
    assert human.stdout.strip() == "queued 0  reserved 0  delayed 0  dead 0  parked 1  dropped 0"

    (tmp_path / "cli_worker_shipping.py").write_text(SHIPPING_MODULE)
    worker = start_worker(rocketman_console_script, "cli_worker_shipping",
                          {**env, "ROCKETMAN_STORAGE": redis_storage_url}, tmp_path)
    try:
        worker.wait_for_line(f"shipped order=7 id={event_id}")
    finally:
        stop_worker(worker)
    assert stats_of(rocketman_console_script, redis_storage_url, env)["queued"] == 0


def dead_letter_one_payment(url: str) -> None:
    """Dead-letter one ``payment.captured`` event in ``url``, from this process."""
    app = Rocketman()
    app.configure(storage=url, worker_count=1, latency=0.2, max_retries=0)

    @app.on_event("payment.captured")
    def refuse_payment(payload: Any) -> None:
        raise ValueError("card declined")

    app.emit("payment.captured", {"order": 7})
    try:
        assert app.drain(timeout=10)
        assert app.stats()["dead"] == 1
    finally:
        app.shutdown(timeout=5)


def test_dead_letters_are_listed_filtered_and_replayed_from_the_shell(
    rocketman_console_script: str, env: dict[str, str], redis_storage_url: str,
) -> None:
    dead_letter_one_payment(redis_storage_url)
    listed = rocketman(rocketman_console_script, "dead-letters", "list", "--json",
                       "--storage", redis_storage_url, env=env)
    assert listed.returncode == 0, listed.stderr
    [record] = json.loads(listed.stdout)
    assert record["event"]["name"] == "payment.captured"
    assert record["event"]["payload"] == {"order": 7}
    assert record["consumer"].endswith("refuse_payment")
    assert "ValueError: card declined" in record["error"]

    human = rocketman(rocketman_console_script, "dead-letters", "list",
                      "--storage", redis_storage_url, env=env)
    [line] = human.stdout.splitlines()
    assert record["id"] in line and "payment.captured" in line and "ValueError: card declined" in line
    assert human.stderr.strip().endswith("1 dead letter")

    for flag, value in (("--event", "refund.*"), ("--consumer", "*:nobody")):
        other = rocketman(rocketman_console_script, "dead-letters", "list", "--json", flag, value,
                          "--storage", redis_storage_url, env=env)
        assert json.loads(other.stdout) == [], f"{flag} {value} filters it out"

    replayed = rocketman(rocketman_console_script, "dead-letters", "replay", "--event", "payment.*",
                         "--storage", redis_storage_url, env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "1 dead letter replayed"
    counts = stats_of(rocketman_console_script, redis_storage_url, env)
    assert (counts["queued"], counts["dead"]) == (1, 0)


def test_purging_dead_letters_asks_first(
    rocketman_console_script: str, env: dict[str, str], redis_storage_url: str,
) -> None:
    dead_letter_one_payment(redis_storage_url)
    purge = [rocketman_console_script, "dead-letters", "purge", "--storage", redis_storage_url]

    # No terminal to ask on: refused, not assumed.
    refused = rocketman(*purge, env=env)
    assert "refusing to purge 1 dead letter without --yes" in assert_one_line_error(refused, 1)

    for answer, code, said in ((b"n\n", 1, "nothing purged"), (b"y\n", 0, "1 dead letter purged")):
        controller, terminal = pty.openpty()
        try:
            os.write(controller, answer)  # the terminal holds the line until input() reads it
            asked = subprocess.run(purge, env=env, stdin=terminal, capture_output=True,
                                   timeout=TIMEOUT)
        finally:
            os.close(terminal)
            os.close(controller)
        assert asked.returncode == code, asked.stderr
        assert "Purge 1 dead letter? [y/N]" in asked.stdout.decode()
        assert said in asked.stdout.decode()
    assert stats_of(rocketman_console_script, redis_storage_url, env)["dead"] == 0

    dead_letter_one_payment(redis_storage_url)
    done = rocketman(*purge, "--yes", env=env)
    assert done.returncode == 0 and done.stdout.strip() == "1 dead letter purged"


@pytest.fixture
def redis_server_with_password() -> Iterator[Any]:
    """A redis-server of this test's own that requires the password ``s3cret``."""
    import redis

    with RedisServer(appendonly=False) as server, redis.Redis.from_url(server.url) as client:
        client.config_set("requirepass", "s3cret")
        yield server


def test_a_password_stays_out_of_a_workers_and_the_shells_output(
    rocketman_console_script: str, env: dict[str, str], redis_server_with_password: Any,
    tmp_path: Path,
) -> None:
    port = redis_server_with_password.port
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    wrong = rocketman(rocketman_console_script, "stats", "--storage", f"redis://:n0tit@127.0.0.1:{port}/0",
                      env=env)
    assert wrong.returncode == 1 and "n0tit" not in wrong.stdout + wrong.stderr

    (tmp_path / "cli_worker_shipping.py").write_text(SHIPPING_MODULE)
    worker = start_worker(rocketman_console_script, "cli_worker_shipping", env, tmp_path,
                          "--storage", url, "--debug")
    try:
        emitted = rocketman(rocketman_console_script, "emit", "order.placed", "--payload",
                            '{"order": 8}', "--storage", url, "--debug", env=env)
        assert emitted.returncode == 0, emitted.stderr
        worker.wait_for_line("shipped order=8")
    finally:
        lines = stop_worker(worker)
    started = next(line for line in lines if "rocketman worker started" in line)
    assert f"redis://:***@127.0.0.1:{port}/0" in started
    output = "\n".join([*lines, emitted.stdout, emitted.stderr])
    assert "s3cret" not in output
