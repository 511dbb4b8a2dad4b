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


def test_a_fork_while_another_thread_holds_the_pool_lock_does_not_hang_the_child(
    rocketman_redis_server: Any,
) -> None:
    """A parent thread's connection, collected in the child during the fork, is not given back.

    At a fork the child collects what the parent's threads held, in fork
    callbacks that may run before the storage learns of the fork. Giving a
    connection back then makes redis-py reset the pool under its lock, which a
    parent thread may hold at that instant: the child hung for ever (1 run in
    30 under load). Here a thread holds the lock at the fork, deterministically.
    """
    code = textwrap.dedent(f"""
        import os, threading, time
        parents_connections = []
        os.register_at_fork(after_in_child=parents_connections.clear)  # runs before the storage's
        import redis
        from rocketman_redis import RedisStorage
        storage = RedisStorage({rocketman_redis_server.url!r}, namespace="fork-lock")
        wire = storage._wire
        wire.connection()                                    # this thread's connection
        parents_connections.append(wire._local.__dict__.pop("held"))
        holding = threading.Event()
        def hold():
            with wire.pool._lock:
                holding.set()
                time.sleep(30)
        threading.Thread(target=hold, daemon=True).start()
        holding.wait()
        pid = os.fork()
        if pid == 0:
            storage._wire.connection()                       # a pool of the child's own
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
        os._exit(0)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert "child exit 0" in done.stdout, done.stdout + done.stderr


def test_a_forked_child_and_its_parent_never_share_a_lease(rocketman_redis_server: Any) -> None:
    """Both reserve right after the fork: two leases, two acks, nothing left reserved or lost."""
    namespace = f"fork-{uuid.uuid4().hex[:8]}"
    code = textwrap.dedent(f"""
        import os
        from rocketman_core import Subscription
        from rocketman_redis import RedisStorage
        storage = RedisStorage({rocketman_redis_server.url!r}, namespace={namespace!r})
        storage.subscribe([Subscription("s", ("*",))], "test")
        storage.push_many([("job.run", b"for one"), ("job.run", b"for the other")])
        while storage.stats()["queued"] < 2:
            pass
        reserved, acked = os.pipe(), os.pipe()
        pid = os.fork()
        (delivery,) = storage.reserve(("s",), 5, 1)
        if pid == 0:  # the child holds its lease until the parent acknowledged its own
            os.write(reserved[1], b"x")
            os.read(acked[0], 1)
            storage.ack([delivery])
            os._exit(0)
        os.read(reserved[0], 1)
        storage.ack([delivery])
        os.write(acked[1], b"x")
        os.waitpid(pid, 0)
        print(storage.stats())
        storage.unsubscribe("s")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "'queued': 0, 'reserved': 0" in done.stdout, done.stdout
