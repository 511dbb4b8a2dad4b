"""A Redis storage object passed to configure() works in a forked child (hardening 7)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from typing import Any


def test_a_forked_child_uses_the_redis_storage_object_of_its_parent(rocketman_redis_server: Any) -> None:
    """Durable, shared by design: the child emits and hosts on it, with locks of its own."""
    code = textwrap.dedent(f"""
        import os, threading
        import rocketman_core as rocketman
        from rocketman_redis import RedisStorage
        storage = RedisStorage({rocketman_redis_server.url!r}, namespace="fork-{uuid.uuid4().hex[:8]}")
        rocketman.configure(storage=storage, worker_count=2, latency=0.2)
        seen = []
        done = threading.Event()

        @rocketman.on_event("ping", name="pong")
        def pong(payload):
            seen.append(payload)
            if payload == "from the child":
                done.set()

        rocketman.emit("ping", "from the parent")
        pid = os.fork()
        if pid == 0:
            rocketman.emit("ping", "from the child")      # the child's own workers start
            ok = done.wait(10) or True                      # either process may take it
            rocketman.shutdown(timeout=5)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert rocketman.drain(timeout=15), "events left"
        print("child exit", os.waitstatus_to_exitcode(status))
        rocketman.shutdown(timeout=5)
        storage.unsubscribe("pong")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr
