"""The durable kit can fail: each deliberately broken Redis storage fails the test of its promise.

Each broken storage is a thin subclass of RedisStorage, written into a
pytester directory with a test module subclassing the kit; the kit runs on it
in this process (``inline_run``), on the session's redis-server, and exactly
the test of the broken promise must fail, every other one pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from rocketman_core.testing import DurableStorageContract

pytest_plugins = ["pytester"]

BROKEN_STORAGES = '''
import time

from rocketman_redis import RedisStorage


class NeverExpires(RedisStorage):
    """Renews, at every reserve and while it waits, each delivery it handed out: no lease expires."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handed_out = []
        self.interrupts = 0

    def reserve(self, subscriptions, timeout, max_count=1):
        deadline = time.monotonic() + timeout
        interrupts = self.interrupts
        while True:
            self.renew([d for d in self.handed_out if not d.acked])
            wait = max(0.0, min(self.renew_interval, deadline - time.monotonic()))
            taken = super().reserve(subscriptions, wait, max_count)
            self.handed_out += taken
            if taken or time.monotonic() >= deadline or self.interrupts != interrupts:
                return taken

    def interrupt(self):
        # Broken in one way only: an interrupt still ends the waiting loop above.
        self.interrupts += 1
        super().interrupt()


class RenewDoesNothing(RedisStorage):
    def renew(self, deliveries):
        pass


class ReleaseLoses(RedisStorage):
    def release(self, deliveries):
        self.ack(deliveries)


class InterruptDoesNothing(RedisStorage):
    def interrupt(self):
        pass


class PiggybackForgetsTheAcks(RedisStorage):
    def ack_and_reserve(self, done, subscriptions, timeout, max_count=1):
        return self.reserve(subscriptions, timeout, max_count)
'''

KIT_MODULE = '''
import uuid

import pytest
import redis
from rocketman_redis import KeyLayout

from rocketman_core.testing import DurableStorageContract, DurableStorageSpec

URL = {url!r}


class TestBroken(DurableStorageContract):
    @pytest.fixture
    def durable_storage_spec(self):
        namespace = f"test-broken-{{uuid.uuid4().hex[:12]}}"
        yield DurableStorageSpec("broken_storages:{broken}",
                                 {{"url": URL, "namespace": namespace, "lease": 0.5}}, lease=0.5)
        with redis.Redis.from_url(URL) as client:
            found = list(client.scan_iter(match=KeyLayout(namespace).pattern))
            if found:
                client.delete(*found)
'''

KIT_TESTS = {name for name in dir(DurableStorageContract) if name.startswith("test_")}


@pytest.mark.parametrize(("broken", "promise"), [
    ("NeverExpires", "test_an_expired_lease_returns_its_message_within_about_the_lease"),
    ("RenewDoesNothing", "test_renew_keeps_a_lease_alive_past_its_first_deadline"),
    ("ReleaseLoses", "test_release_requeues_at_once_and_in_order"),
    ("InterruptDoesNothing", "test_interrupt_wakes_a_blocked_reserve"),
    ("PiggybackForgetsTheAcks", "test_ack_and_reserve_acknowledges_before_it_takes_or_blocks"),
])
def test_the_kit_fails_a_broken_storage_on_its_promise_only(
    pytester: pytest.Pytester, rocketman_redis_server: Any, broken: str, promise: str,
) -> None:
    """The targeted test fails, with its message; the other eight pass."""
    assert promise in KIT_TESTS and len(KIT_TESTS) == 9, sorted(KIT_TESTS)
    pytester.makepyfile(broken_storages=BROKEN_STORAGES,
                        test_broken=KIT_MODULE.format(url=rocketman_redis_server.url, broken=broken))
    # The kit's child process imports broken_storages with this process's sys.path.
    pytester.syspathinsert()
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:asyncio")
    passed, skipped, failed = reprec.listoutcomes()
    failed_tests = {report.nodeid.rpartition("::")[2] for report in failed}
    assert failed_tests == {promise}, (
        f"{broken}: expected only {promise} to fail, failed: {sorted(failed_tests)}\n"
        + "\n".join(str(report.longrepr)[-1500:] for report in failed))
    assert {report.nodeid.rpartition("::")[2] for report in passed} == KIT_TESTS - {promise}
    assert not skipped
