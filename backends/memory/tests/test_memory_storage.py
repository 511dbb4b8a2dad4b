"""The memory storage: the storage conformance kit, and what only memory promises."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rocketman_memory import MemoryStorage, QueueFull, register_storages

from rocketman_core import Storage, Subscription
from rocketman_core.testing import StorageContract


class TestMemoryStorage(StorageContract):
    """Every promise of the Storage contract, on the memory storage."""

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        storage = MemoryStorage()
        yield storage
        storage.close()


def _subscribed(**options: Any) -> MemoryStorage:
    """A memory storage with one subscription, ``s`` on every event."""
    storage = MemoryStorage(**options)
    storage.subscribe([Subscription("s", ("*",))], "test")
    return storage


def _in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:
            outcome["error"] = error
        outcome["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True, name="rocketman-memory-test")
    thread.start()
    return thread, outcome


def test_a_full_queue_makes_push_wait_then_raise_queue_full() -> None:
    """With maxsize, a push into a full queue waits ``full_timeout``, then says why it failed."""
    storage = _subscribed(maxsize=2, full_timeout=0.3)
    storage.push_many([("e", b"one"), ("e", b"two")])
    began = time.monotonic()
    with pytest.raises(QueueFull) as raised:
        storage.push("e", b"three")
    waited = time.monotonic() - began
    assert 0.25 <= waited < 2.0, f"push waited {waited:.2f}s for room, full_timeout is 0.3s"
    message = str(raised.value)
    assert "full" in message and "2 queued" in message and "0.3s" in message, message
    assert "Add workers" in message, message
    assert storage.stats()["queued"] == 2, "the refused message was queued anyway"


def test_push_many_into_a_full_queue_raises_queue_full() -> None:
    """``push_many`` waits for room for each message, like ``push``."""
    storage = _subscribed(maxsize=2, full_timeout=0.2)
    with pytest.raises(QueueFull):
        storage.push_many([("e", b"one"), ("e", b"two"), ("e", b"three")])


def _until_blocked(storage: MemoryStorage, timeout: float = 5.0) -> None:
    """Wait until a reserve of another thread is blocked in the storage's condition."""
    deadline = time.monotonic() + timeout
    while sum(watch.waiting for watch in storage._watches.values()) < 1:
        assert time.monotonic() < deadline, "the reserve never blocked"
        time.sleep(0.001)


def test_a_waiting_push_goes_on_as_soon_as_a_worker_makes_room() -> None:
    """A push blocked on a full queue returns as soon as a reserve takes a message."""
    storage = _subscribed(maxsize=1, full_timeout=10)
    storage.push("e", b"first")
    thread, outcome = _in_thread(lambda: storage.push("e", b"second"))
    time.sleep(0.1)  # let the push block on the full queue before making room
    assert "at" not in outcome, "push did not wait for room"
    made_room = time.monotonic()
    [delivery] = storage.reserve(("s",), 1.0)
    thread.join(5)
    assert "error" not in outcome, outcome
    assert outcome["at"] - made_room < 0.5, "the waiting push did not wake up when room was made"
    assert delivery.message == b"first"
    assert [d.message for d in storage.reserve(("s",), 1.0)] == [b"second"]


def test_interrupt_wakes_a_blocked_reserve() -> None:
    """``interrupt()`` (called by the core at shutdown) makes a blocked reserve return []."""
    storage = _subscribed()
    thread, outcome = _in_thread(lambda: storage.reserve(("s",), 30.0))
    _until_blocked(storage)
    interrupted = time.monotonic()
    storage.interrupt()
    thread.join(5)
    assert outcome.get("result") == [], outcome
    assert outcome["at"] - interrupted < 0.5, "interrupt() did not wake the reserve"
    storage.push("e", b"after")
    assert [d.message for d in storage.reserve(("s",), 1.0)] == [b"after"], "interrupt() broke reserve"


def test_a_push_wakes_the_reserve_that_waits_now_not_one_that_timed_out_before() -> None:
    """Reserves that timed out leave no trace: the next push wakes the one still waiting, at once."""
    storage = _subscribed()
    for _ in range(3):
        assert storage.reserve(("s",), 0.01) == []
    thread, outcome = _in_thread(lambda: storage.reserve(("s",), 30.0))
    _until_blocked(storage)
    pushed = time.monotonic()
    storage.push("e", b"now")
    thread.join(5)
    assert [d.message for d in outcome.get("result", ())] == [b"now"], outcome
    assert outcome["at"] - pushed < 0.5, "the push woke a reserve that had timed out, not the waiting one"


def test_options_from_a_url_arrive_as_strings() -> None:
    """``memory://?maxsize=5&full_timeout=0.5`` passes strings; they are converted."""
    storage = _subscribed(maxsize="5", full_timeout="0.5", url="memory://")
    assert (storage.maxsize, storage.full_timeout) == (5, 0.5)


@pytest.mark.parametrize("options", [{"maxsize": "many"}, {"full_timeout": "soon"},
                                     {"maxsize": -1}])
def test_bad_options_are_refused_by_name(options: dict[str, Any]) -> None:
    """A wrong option value is a ValueError that names the option."""
    with pytest.raises(ValueError, match=r"maxsize|full_timeout"):
        MemoryStorage(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"full_timeout": "nan"}, r"option 'full_timeout' must be a finite number of seconds, at least 0, not 'nan'"),
    ({"full_timeout": -1}, r"option 'full_timeout' must be a finite number of seconds, at least 0, not -1"),
    ({"full_timeout": "inf"}, r"option 'full_timeout' must be a finite number of seconds"),
    ({"maxsize": True}, r"option 'maxsize' must be an integer, at least 0 \(0: no bound\), not True"),
    ({"maxsize": 2.5}, r"option 'maxsize' must be an integer"),
])
def test_each_bad_option_is_named_with_its_value_and_what_it_must_be(
    options: dict[str, Any], message: str,
) -> None:
    """A NaN or negative full_timeout was accepted, and made a full queue fail at once or never."""
    with pytest.raises(ValueError, match=r"^memory storage: " + message):
        MemoryStorage(**options)


def test_the_memory_storage_is_not_durable() -> None:
    """``durable`` is False: the core drains it at exit and warns about leftovers."""
    assert MemoryStorage.durable is False


def test_the_plugin_registers_the_memory_storage_through_register_storages() -> None:
    """The entry-point module's ``register_storages`` hook provides ``memory``."""
    registered: dict[str, Any] = {}
    register_storages(lambda name, factory, **kwargs: registered.__setitem__(name, factory))
    assert list(registered) == ["memory"]
    built = registered["memory"](maxsize="3")
    assert isinstance(built, MemoryStorage) and built.maxsize == 3


def test_push_many_beyond_maxsize_feeds_a_waiting_worker_while_it_waits_for_room() -> None:
    """A batch larger than the room left wakes blocked workers with what it queued so far."""
    storage = _subscribed(maxsize=2, full_timeout=5)
    received: list[bytes] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set() and len(received) < 5:
            deliveries = storage.reserve(("s",), 30.0)  # long: only a notification wakes it in time
            received.extend(d.message for d in deliveries)
            storage.ack(deliveries)

    thread = threading.Thread(target=worker, daemon=True, name="rocketman-memory-test")
    thread.start()
    _until_blocked(storage)
    began = time.monotonic()
    try:
        storage.push_many([("e", m) for m in (b"1", b"2", b"3", b"4", b"5")])
    finally:
        took = time.monotonic() - began
        stop.set()
        storage.interrupt()
        thread.join(5)
    assert took < 1.0, f"push_many waited {took:.2f}s for room a blocked worker could have made"
    assert received == [b"1", b"2", b"3", b"4", b"5"]


def test_a_push_after_close_is_refused_and_stats_keep_what_close_dropped() -> None:
    """close() drops what is held and counts it in one step; a later push raises, never vanishes."""
    from rocketman_memory import StorageClosed

    storage = _subscribed()
    storage.push_many([("e", b"one"), ("e", b"two"), ("e", b"three")])
    held = storage.reserve(("s",), 1.0, 1)
    storage.close()
    assert storage.stats() == {"queued": 2, "reserved": 1, "delayed": 0, "dead": 0, "parked": 0,
                               "dropped": 0}
    with pytest.raises(StorageClosed, match="was not stored"):
        storage.push("e", b"late")
    with pytest.raises(StorageClosed):
        storage.push_many([("e", b"later")])
    storage.ack(held)  # a worker finishing after close changes nothing counted
    assert storage.stats()["reserved"] == 1
    storage.close()  # idempotent


def test_backlog_bytes_counts_what_waits_queued_or_delayed_and_nothing_else() -> None:
    """What the core bounds a relay's emits on (hardening 27): exact through every outcome."""
    storage = MemoryStorage()
    storage.subscribe([Subscription("a", ("*",)), Subscription("b", ("x",))], "test")
    storage.push("x", b"12345")            # a and b: 10 bytes
    storage.push_many([("y", b"123")])     # a only: 3
    assert storage.backlog_bytes() == 13
    taken = storage.reserve(["a", "b"], timeout=0, max_count=10)
    assert len(taken) == 3 and storage.backlog_bytes() == 0, "reserved is held by a worker, not waiting"
    first, second, third = taken
    storage.release([first])
    storage.retry_later(second, b"retry", delay=60)
    storage.dead_letter(third, b"dead", "a reason")
    assert storage.backlog_bytes() == len(first.message) + len(b"retry")
    storage.unsubscribe(first.subscription)
    storage.unsubscribe(second.subscription)
    assert storage.backlog_bytes() == 0
    storage.push("x", b"1")
    storage.close()
    assert storage.backlog_bytes() == 0
