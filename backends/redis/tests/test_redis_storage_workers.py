"""Worker processes on the Redis storage: SIGKILL loses nothing, two workers share, bad bytes go aside.

Each test runs real ``rocketman worker`` processes (see
``redis_storage_worker_app.py``) against the session's redis-server, on a
namespace of its own, and emits from this process as a web server would
(``worker_count=0``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman

if TYPE_CHECKING:
    from conftest import SharedQueue, WorkerProcesses

Wait = Any  # the redis_wait_for fixture: wait_for(condition, timeout, failure)


def _settled(app: Rocketman) -> bool:
    stats = app.stats()
    return stats["queued"] + stats["reserved"] + stats["delayed"] == 0


def test_a_sigkilled_worker_loses_nothing_and_a_second_worker_finishes(
    redis_producer: Rocketman, redis_workers: WorkerProcesses, redis_queue: SharedQueue,
    redis_wait_for: Wait, record_property: Any,
) -> None:
    """10,000 events; the worker is SIGKILLed midway; another handles every event at least once."""
    ids = redis_producer.emit_many(("load.item", {"n": n}) for n in range(10_000))
    first = redis_workers.start(handle_seconds=0.001)
    redis_wait_for(lambda: sum(redis_queue.handled().values()) >= 3000, 60,
                   lambda: f"the first worker handled too little:\n{first.log()[-3000:]}")
    first.kill()
    before = sum(redis_queue.handled().values())
    assert before < len(ids), "the first worker finished before it could be killed"
    held = redis_producer.stats()["reserved"]

    second = redis_workers.start(handle_seconds=0.001)
    redis_workers.wait_all_handled(set(ids), 60)
    redis_wait_for(lambda: _settled(redis_producer), 30,
                   lambda: f"events left in Redis: {redis_producer.stats()}")
    assert second.terminate() == 0, second.log()[-3000:]

    counts = redis_queue.handled()
    assert set(counts) == set(ids), "a handled id was never emitted"
    twice = sum(seen - 1 for seen in counts.values() if seen > 1)
    record_property("handled_twice", twice)
    print(f"\nSIGKILL after {before} handlings, holding {held} leased events: "
          f"{twice} of {len(ids)} events were handled twice")
    # Only what the dead worker held (5 threads x a batch of 64) may run twice.
    assert twice <= 5 * 64, f"{twice} events were handled twice: more than the dead worker held"


def test_two_workers_share_one_queue_and_handle_each_event_once(
    redis_producer: Rocketman, redis_workers: WorkerProcesses, redis_queue: SharedQueue,
    redis_wait_for: Wait,
) -> None:
    """Two worker processes on one queue: each event handled exactly once, by one of them."""
    first = redis_workers.start()
    second = redis_workers.start(handle_seconds=0.0005)
    ids = redis_producer.emit_many(("load.shared", {"n": n}) for n in range(3000))
    redis_workers.wait_all_handled(set(ids), 60)
    redis_wait_for(lambda: _settled(redis_producer), 30,
                   lambda: f"events left in Redis: {redis_producer.stats()}")
    assert first.terminate() == 0, first.log()[-3000:]
    assert second.terminate() == 0, second.log()[-3000:]

    counts = redis_queue.handled()
    assert set(counts) == set(ids)
    twice = [event_id for event_id, seen in counts.items() if seen > 1]
    assert not twice, f"{len(twice)} events were handled twice though nothing failed"
    by_process = redis_queue.handled_by()
    assert set(by_process) == {str(first.process.pid), str(second.process.pid)}, (
        f"one worker did all the work: {dict(by_process)}")


MALFORMED = {
    b"\xff\xfe\x00 not even UTF-8": "not JSON",
    b'{"hello": "world"}': "missing",
    b"[1, 2, 3]": "not a JSON object",
    b'{"id": 42, "name": "load.typed"}': "'id'",
    b'{"id": "x1", "name": "load.typed", "attempt": "zero"}': "'attempt'",
    b'{"id": "x2", "name": "has a space"}': "invalid event name",
}

#: What a foreign (or 0.1) producer LPUSHes to the 0.1 queue ``{ns}:queue``.
#: Without a name to route by, it cannot reach a subscription: the storage
#: dead-letters it for nobody. With one, it is routed, and the worker
#: dead-letters it as its subscription's.
MALFORMED_IN_THE_0_1_QUEUE = {
    b"\x00\x01 garbage in the old queue": ("without a name", None),
    b'{"no": "name here"}': ("without a name", None),
    b'{"id": 7, "name": "load.legacy"}': ("'id'", "redis_storage_worker_app:record"),
}


def test_malformed_messages_pushed_by_hand_end_in_dead_letters_and_the_worker_goes_on(
    redis_producer: Rocketman, redis_workers: WorkerProcesses, redis_queue: SharedQueue,
    redis_wait_for: Wait, rocketman_redis_server: RedisServer,
) -> None:
    """Garbage bytes, foreign JSON and wrong types LPUSHed by hand are dead-lettered with reasons.

    Into the worker's subscription queue (a foreign producer that writes
    Redis itself), and into the 0.1 queue (a producer of the old layout):
    nothing is lost, nothing stops the worker.
    """
    worker = redis_workers.start(latency=3.0)  # the default: stopping must not wait it out
    # The worker registered its consumer's subscription when it started.
    consumer = "redis_storage_worker_app:record"
    assert [info.name for info in redis_producer.subscriptions()] == [consumer]
    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        for message in MALFORMED:
            client.lpush(redis_queue.keys.subscription(consumer).queue, message)
        for message in MALFORMED_IN_THE_0_1_QUEUE:
            client.lpush(redis_queue.keys.queue, message)
    after = redis_producer.emit("load.after", {"still": "working"})
    redis_workers.wait_all_handled({after}, 30)
    expected = {**{m: (reason, consumer) for m, reason in MALFORMED.items()},
                **MALFORMED_IN_THE_0_1_QUEUE}
    # The worker's process routes the 0.1 queue (at the latest at its keep-alive, every 5 s).
    redis_wait_for(lambda: redis_producer.stats()["dead"] == len(expected), 30,
                   lambda: f"dead letters: {redis_producer.stats()}\n{worker.log()[-3000:]}")
    assert worker.process.poll() is None, "the worker died on a malformed message"

    letters = {letter.message: letter for letter in redis_producer.dead_letters()}
    assert set(letters) == set(expected)
    for message, (reason, owner) in expected.items():
        letter = letters[message]
        assert letter.event is None
        assert letter.error.startswith("malformed message"), letter.error
        assert reason in letter.error, f"{message!r}: {letter.error}"
        assert letter.consumer == owner, f"{message!r}: dead-lettered for {letter.consumer}"
    redis_wait_for(lambda: _settled(redis_producer), 10,
                   lambda: f"events left in Redis: {redis_producer.stats()}")
    stopping = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - stopping < 2.0, "SIGTERM waited out the workers' 3s latency"
