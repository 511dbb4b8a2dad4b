"""A Redis storage object passed to configure() works in a forked child (hardening 7)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from typing import Any


def test_a_forked_child_uses_the_redis_storage_object_of_its_parent(rocketman_redis_server: Any) -> None:
    """Durable, shared by design: the child emits and hosts on it, with locks and connections of its own.

    Either process may take either event, so the consumer records what it handled in Redis
    and the parent checks the record once both have drained.
    """
    namespace = f"fork-{uuid.uuid4().hex[:8]}"
    code = textwrap.dedent(f"""
        import os
        import redis
        import rocketman_core as rocketman
        from rocketman_redis import RedisStorage
        storage = RedisStorage({rocketman_redis_server.url!r}, namespace={namespace!r})
        rocketman.configure(storage=storage, worker_count=2, latency=0.2)
        record = redis.Redis.from_url({rocketman_redis_server.url!r})

        @rocketman.on_event("ping", name="pong")
        def pong(payload):
            record.rpush({namespace!r} + ":handled", f"{{payload}} in {{os.getpid()}}")

        parent = os.getpid()
        rocketman.emit("ping", "from the parent")
        pid = os.fork()
        if pid == 0:
            rocketman.emit("ping", "from the child")      # the child's own router and workers start
            ok = rocketman.drain(timeout=15)
            rocketman.shutdown(timeout=5)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert rocketman.drain(timeout=15), "events left"
        print("child exit", os.waitstatus_to_exitcode(status))
        rocketman.shutdown(timeout=5)
        storage.unsubscribe("pong")
        for line in sorted(record.lrange({namespace!r} + ":handled", 0, -1)):
            print(line.decode())
        record.delete({namespace!r} + ":handled")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "child exit 0" in done.stdout, done.stdout + done.stderr
    handled = [line.split(" in ")[0] for line in done.stdout.splitlines() if " in " in line]
    assert handled == ["from the child", "from the parent"], done.stdout
