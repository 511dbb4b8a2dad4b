"""The README's snippets run as written (hardening 28).

Each test takes the code blocks of one README section, as they are, and runs
them the way a reader would: a script, a pytest run of the testing example,
a relay process and the ``redis-cli PUBLISH`` line beside it. The only change
is the Redis address: the session's own server instead of localhost:6379.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def _run(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_the_example_and_its_dead_letters_snippet_run(tmp_path: Path) -> None:
    example, dead_letters = _blocks(_section("Example"), "python")
    done = _run(example + dead_letters, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "welcome, ada@example.com" in done.stdout, done.stdout
    assert "user.signed_up" in done.stdout, "the Audit consumer of user.* ran too"


def test_the_async_example_runs_its_coroutines_and_sync_consumers(tmp_path: Path) -> None:
    [example] = _blocks(_section("Async code"), "python")
    done = _run(example, tmp_path)
    assert done.returncode == 0, done.stderr
    *receipts, ledger = done.stdout.splitlines()
    assert sorted(receipts) == [f"receipt for order {n}" for n in range(3)], done.stdout
    assert ledger == "ledger [0, 1, 2]", done.stdout
    assert "never awaited" not in done.stderr, done.stderr


def test_the_testing_example_passes_under_pytest(tmp_path: Path) -> None:
    myapp, test = _blocks(_section("Testing your consumers"), "python")
    (tmp_path / "myapp.py").write_text(myapp)
    (tmp_path / "test_myapp.py").write_text(test)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_myapp.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_relay_example_receives_what_its_publish_line_sends(
    rocketman_redis_server: Any, tmp_path: Path,
) -> None:
    section = _section("Relays: events from other services")
    (script,) = _blocks(section, "python")
    (publish,) = _blocks(section, "sh")
    server = redis.Redis.from_url(rocketman_redis_server.url)
    address = rocketman_redis_server.url.split("://", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    namespace = f"readme-{uuid.uuid4().hex[:8]}"
    relay = subprocess.Popen(  # Ctrl-C as in a terminal, even when the test run inherited SIGINT ignored
        [sys.executable, "-c", script.replace("localhost:6379", address)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ROCKETMAN_REDIS_URL": f"{rocketman_redis_server.url}?namespace={namespace}"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(relay.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while server.pubsub_numpat() < 1:
            assert relay.poll() is None, relay.communicate()[1]
            assert time.monotonic() < deadline, "the relay did not subscribe"
            time.sleep(0.05)
        command = shlex.split(publish.split("#", 1)[0])
        assert command[0] == "redis-cli"
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        sent = subprocess.run([cli, "-h", host, "-p", port, *command[1:]],
                              capture_output=True, text=True, timeout=10)
        assert sent.stdout.strip() == "1", "one subscriber received the PUBLISH"
        while not any("shipping order 7" in line for line in lines):
            assert time.monotonic() < deadline, f"the consumer did not run: {lines}"
            time.sleep(0.05)
        relay.send_signal(signal.SIGINT)  # the README's Ctrl-C
        assert relay.wait(10) is not None
    finally:
        if relay.poll() is None:
            relay.kill()
        relay.wait(5)
        for key in server.scan_iter(f"{{{namespace}}}:*"):  # the storage's keys: {namespace}:...
            server.delete(key)
        server.close()
