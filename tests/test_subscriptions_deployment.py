"""Pub-sub across processes, as a team deploys it: billing, mailer and analytics workers on one Redis.

Every test runs real ``rocketman worker`` processes (the installed console
script) against the session's redis-server, on a namespace of its own, and
emits from this process as a web server does (``worker_count=0``). Each
consumer appends ``<subscription> <event id> <pid>`` to one file with a
single ``os.write`` on an ``O_APPEND`` descriptor: the line is the kernel's
as soon as the call returns, so a SIGKILL right after loses nothing
written, and lines of concurrent threads and processes never interleave.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rocketman_relay_redis.testing import RedisServer

from rocketman_core import Rocketman

ROCKETMAN = str(Path(sys.executable).with_name("rocketman"))

MODULES = {
    "shop_record": '''
import os
import time

_FILE = os.open(os.environ["SHOP_EVENTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_PID = os.getpid()
_SECONDS = float(os.environ.get("SHOP_HANDLE_SECONDS") or 0)


def record(subscription, event):
    if _SECONDS:
        time.sleep(_SECONDS)  # the work a real consumer does
    os.write(_FILE, f"{subscription} {event.id} {_PID}\\n".encode())
''',
    "shop_billing": '''
import rocketman_core as rocketman
from shop_record import record


@rocketman.on_event("invoice.paid", name="billing.book")
def book(payload, event):
    record("billing.book", event)
''',
    "shop_mailer": '''
import rocketman_core as rocketman
from shop_record import record


@rocketman.on_event("user.signed_up", name="mailer.welcome")
def welcome(payload, event):
    record("mailer.welcome", event)
''',
    "shop_analytics": '''
import rocketman_core as rocketman
from shop_record import record


@rocketman.on_event("*", name="analytics.count")
def count(payload, event):
    record("analytics.count", event)
''',
}


def wait_until(condition: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure()} (waited {timeout}s)")
        time.sleep(0.05)


class Worker:
    """One ``rocketman worker MODULE...`` process, logging to a file."""

    def __init__(self, shop: Shop, modules: tuple[str, ...], handle_seconds: float,
                 extra_env: dict[str, str]) -> None:
        self.modules = modules
        self.log_file = shop.directory / f"worker-{len(shop.workers) + 1}-{'-'.join(modules)}.log"
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - open for the life of the process
        env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
        env.pop("PYTHONPATH", None)
        env.update(SHOP_EVENTS_FILE=str(shop.events_file), SHOP_HANDLE_SECONDS=str(handle_seconds),
                   **extra_env)
        self.process = subprocess.Popen(
            [ROCKETMAN, "worker", *modules, "--storage", shop.url, "--workers", "5",
             "--latency", "0.5"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=shop.directory,
        )

    @property
    def pid(self) -> str:
        return str(self.process.pid)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        wait_until(lambda: text in self.log() or self.process.poll() is not None, timeout,
                   lambda: f"no {text!r} in the log of {self.modules}:\n{self.log()[-3000:]}")
        assert text in self.log(), f"the worker exited:\n{self.log()[-3000:]}"

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"no stop within 20s of SIGTERM:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, exactly like a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


class Shop:
    """One deployment: a namespace on the session's Redis, the consumer modules, the workers."""

    def __init__(self, server: RedisServer, directory: Path) -> None:
        self.namespace = f"shop-{uuid.uuid4().hex[:10]}"
        self.url = f"{server.url}?namespace={self.namespace}&lease=1"
        self.directory = directory
        self.events_file = directory / "handled.log"
        for name, source in MODULES.items():
            (directory / f"{name}.py").write_text(source)
        self.workers: list[Worker] = []
        self.web = Rocketman()
        self.web.configure(storage=self.url, worker_count=0)

    def start(self, *modules: str, handle_seconds: float = 0.0, **env: str) -> Worker:
        worker = Worker(self, modules, handle_seconds, env)
        self.workers.append(worker)
        worker.wait_for_log("rocketman worker started")
        return worker

    def handled(self, subscription: str) -> Counter[str]:
        """How many times ``subscription`` handled each event id."""
        if not self.events_file.exists():
            return Counter()
        return Counter(parts[1] for parts in map(str.split, self.events_file.read_text().splitlines())
                       if len(parts) == 3 and parts[0] == subscription)

    def pids(self, subscription: str) -> set[str]:
        if not self.events_file.exists():
            return set()
        return {parts[2] for parts in map(str.split, self.events_file.read_text().splitlines())
                if len(parts) == 3 and parts[0] == subscription}

    def wait_handled(self, expected: dict[str, set[str]], timeout: float = 60.0) -> None:
        """Wait until each subscription handled (at least once) every id expected of it."""
        def missing() -> dict[str, int]:
            return {name: len(ids - set(self.handled(name))) for name, ids in expected.items()}

        wait_until(lambda: not any(missing().values()), timeout,
                   lambda: f"events never handled, by subscription: {missing()}; last log:\n"
                           f"{self.workers[-1].log()[-2000:]}")

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("ROCKETMAN_")}
        environment.pop("PYTHONPATH", None)
        environment.update(env or {})
        return subprocess.run([ROCKETMAN, *args, "--storage", self.url], capture_output=True,
                              text=True, timeout=60, env=environment, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.web.shutdown(timeout=5)


@pytest.fixture
def shop(rocketman_redis_server: RedisServer, tmp_path: Path) -> Iterator[Shop]:
    deployment = Shop(rocketman_redis_server, tmp_path)
    yield deployment
    deployment.close()
    import redis

    with redis.Redis.from_url(rocketman_redis_server.url) as client:
        keys = list(client.scan_iter(match=f"\\{{{deployment.namespace}\\}}:*", count=1000))
        if keys:
            client.delete(*keys)


def _no_trouble(worker: Worker) -> None:
    log = worker.log()
    assert "Traceback" not in log, log[-3000:]
    assert "no stable name" not in log, "a consumer with an explicit name was warned about"


def test_each_consumer_receives_every_event_it_subscribes_to_wherever_it_runs(shop: Shop) -> None:
    """Billing x2, mailer, analytics on *, a producer; a mailer deploy; a billing+mailer monolith."""
    web = shop.web
    # The first deployment: emit, then start the workers. Nothing is lost.
    early_invoices = web.emit_many(("invoice.paid", {"n": n}) for n in range(20))
    early_users = web.emit_many(("user.signed_up", {"n": n}) for n in range(20))
    assert web.stats()["parked"] == 40, web.stats()

    billing = [shop.start("shop_billing", handle_seconds=0.001) for _ in range(2)]
    mailer = shop.start("shop_mailer")
    analytics = shop.start("shop_analytics")
    invoices = set(early_invoices) | set(web.emit_many(("invoice.paid", {"n": n}) for n in range(1000)))
    users = set(early_users) | {web.emit("user.signed_up", {"n": n}) for n in range(300)}
    others = set(web.emit_many(("stock.moved", {"n": n}) for n in range(50)))
    shop.wait_handled({"billing.book": invoices, "mailer.welcome": users,
                       "analytics.count": invoices | users | others})
    assert set(shop.handled("billing.book")) == invoices, "billing got events it does not subscribe to"
    assert set(shop.handled("mailer.welcome")) == users
    assert shop.pids("billing.book") == {b.pid for b in billing}, (
        "two processes hosting billing.book must share its deliveries")

    # The mailer is deployed: stopped, events keep coming, it comes back.
    assert mailer.terminate() == 0, mailer.log()[-3000:]
    during = set(web.emit_many(("user.signed_up", {"n": n}) for n in range(100)))
    (info,) = [i for i in web.subscriptions() if i.name == "mailer.welcome"]
    assert info.hosts == {}, "a cleanly stopped mailer is still listed as a host"
    wait_until(lambda: next(i for i in web.subscriptions() if i.name == "mailer.welcome")
               .counts["queued"] == 100, 10, lambda: f"{web.subscriptions()}")
    mailer = shop.start("shop_mailer")
    shop.wait_handled({"mailer.welcome": users | during})

    # A monolith hosting billing and mailer joins: it competes, and doubles nothing.
    monolith = shop.start("shop_billing", "shop_mailer", handle_seconds=0.001)
    more_invoices = set(web.emit_many(("invoice.paid", {"n": n}) for n in range(1000)))
    more_users = set(web.emit_many(("user.signed_up", {"n": n}) for n in range(300)))
    every = invoices | users | others | during | more_invoices | more_users
    shop.wait_handled({"billing.book": invoices | more_invoices,
                       "mailer.welcome": users | during | more_users, "analytics.count": every})
    wait_until(lambda: sum(web.stats()[k] for k in ("queued", "reserved", "delayed")) == 0, 30,
               lambda: f"left in Redis: {web.stats()}")
    for name in ("billing.book", "mailer.welcome", "analytics.count"):
        twice = [i for i, seen in shop.handled(name).items() if seen > 1]
        assert not twice, f"{name} handled {len(twice)} events twice though nothing failed"
    assert monolith.pid in shop.pids("billing.book") | shop.pids("mailer.welcome"), (
        "the monolith took no work")
    for worker in (*billing, mailer, analytics, monolith):
        assert worker.terminate() == 0, worker.log()[-3000:]
        _no_trouble(worker)


def test_a_sigkilled_worker_hosting_two_of_three_subscriptions_loses_nothing(shop: Shop) -> None:
    """SIGKILL a billing+mailer process mid-run: every event reaches each of its subscriptions."""
    web = shop.web
    victim = shop.start("shop_billing", "shop_mailer", handle_seconds=0.002)
    analytics = shop.start("shop_analytics")
    invoices = set(web.emit_many(("invoice.paid", {"n": n}) for n in range(3000)))
    users = set(web.emit_many(("user.signed_up", {"n": n}) for n in range(3000)))
    wait_until(lambda: len(shop.handled("billing.book")) + len(shop.handled("mailer.welcome")) >= 1500,
               60, lambda: f"the victim handled too little:\n{victim.log()[-3000:]}")
    victim.kill()
    before = sum(shop.handled("billing.book").values()) + sum(shop.handled("mailer.welcome").values())
    assert before < len(invoices) + len(users), "the victim finished before it could be killed"

    replacement = shop.start("shop_billing", "shop_mailer")
    shop.wait_handled({"billing.book": invoices, "mailer.welcome": users,
                       "analytics.count": invoices | users})
    wait_until(lambda: sum(web.stats()[k] for k in ("queued", "reserved", "delayed")) == 0, 30,
               lambda: f"left in Redis: {web.stats()}")
    twice = {name: sum(seen - 1 for seen in shop.handled(name).values())
             for name in ("billing.book", "mailer.welcome", "analytics.count")}
    print(f"\nSIGKILL after {before} handlings: handled twice {twice}")
    # Only what the dead process held (5 threads x a batch of 64) may run twice.
    assert twice["billing.book"] + twice["mailer.welcome"] <= 5 * 64, twice
    assert twice["analytics.count"] == 0, "a subscription the victim did not host ran twice"
    for worker in (replacement, analytics):
        assert worker.terminate() == 0, worker.log()[-3000:]


def _rows(done: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["SUBSCRIPTION", "PATTERNS"], done.stdout
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_rocketman_subscriptions_lists_flags_and_removes_through_the_console_script(
    shop: Shop,
) -> None:
    """`rocketman subscriptions`, `remove`, `stats --by-subscription`; stale and expired ones."""
    web = shop.web
    billing = shop.start("shop_billing")
    mailer = shop.start("shop_mailer")
    ids = set(web.emit_many(("invoice.paid", {"n": n}) for n in range(5)))
    shop.wait_handled({"billing.book": ids})

    rows = _rows(shop.cli("subscriptions"))
    assert set(rows) == {"billing.book", "mailer.welcome"}
    assert rows["billing.book"][1] == "invoice.paid"
    assert rows["billing.book"][2:6] == ["0", "0", "0", "0"], rows
    assert rows["billing.book"][6].endswith(f":{billing.pid}") and rows["billing.book"][-1] == "live"
    listed = json.loads(shop.cli("subscriptions", "--json").stdout)
    assert [s["name"] for s in listed] == ["billing.book", "mailer.welcome"]
    assert listed[0]["patterns"] == ["invoice.paid"] and len(listed[0]["live_hosts"]) == 1

    refused = shop.cli("subscriptions", "remove", "billing.book", "--yes")
    assert refused.returncode == 1 and "hosted by live processes" in refused.stderr, refused
    assert billing.terminate() == 0
    web.emit_many(("invoice.paid", {"n": n}) for n in range(3))

    rows = _rows(shop.cli("subscriptions"))
    assert rows["billing.book"][2] == "3" and rows["billing.book"][-3:-1] != ["-", "never"]
    assert " ".join(rows["billing.book"][-3:]).endswith("no live host"), rows["billing.book"]
    by_subscription = shop.cli("stats", "--by-subscription")
    assert by_subscription.returncode == 0, by_subscription.stderr
    assert by_subscription.stdout.splitlines()[0].split() == [
        "SUBSCRIPTION", "QUEUED", "RESERVED", "DELAYED", "DEAD"]
    table = {line.split()[0]: line.split()[1:] for line in by_subscription.stdout.splitlines()}
    assert table["billing.book"] == ["3", "0", "0", "0"] and table["TOTAL"][0] == "3", table
    assert by_subscription.stdout.splitlines()[-1] == "parked 0  dropped 0"
    counted = json.loads(shop.cli("stats", "--by-subscription", "--json").stdout)
    assert counted["subscriptions"]["billing.book"] == {"queued": 3, "reserved": 0, "delayed": 0,
                                                        "dead": 0}
    assert counted["totals"]["queued"] == 3 and "parked" in counted["totals"]

    asked = shop.cli("subscriptions", "remove", "billing.book")
    assert asked.returncode == 1 and "refusing to remove" in asked.stderr and "queued 3" in asked.stderr
    typo = shop.cli("subscriptions", "remove", "billing.bok", "--yes")
    assert typo.returncode == 1 and "did you mean 'billing.book'" in typo.stderr, typo.stderr
    removed = shop.cli("subscriptions", "remove", "billing.book", "--yes")
    assert removed.returncode == 0 and "removed the subscription 'billing.book'" in removed.stdout
    assert [s["name"] for s in json.loads(shop.cli("subscriptions", "--json").stdout)] == [
        "mailer.welcome"]
    assert web.stats()["queued"] == 0, "the removed subscription's backlog is still counted"

    # The mailer stops for good: flagged stale after subscription_stale_after...
    assert mailer.terminate() == 0
    stale_env = {"ROCKETMAN_SUBSCRIPTION_STALE_AFTER": "1"}
    wait_until(lambda: "STALE" in shop.cli("subscriptions", env=stale_env).stdout, 15,
               lambda: shop.cli("subscriptions", env=stale_env).stdout)
    flagged = shop.cli("subscriptions", env=stale_env)
    assert "no live host for more than 1s" in flagged.stderr, flagged.stderr
    # ... logged once by a worker hosting something else, and removed by one that is told to.
    watcher = shop.start("shop_analytics", ROCKETMAN_SUBSCRIPTION_STALE_AFTER="1")
    watcher.wait_for_log("subscription mailer.welcome on 'user.signed_up' has had no live host")
    assert [s["name"] for s in json.loads(shop.cli("subscriptions", "--json").stdout)] == [
        "analytics.count", "mailer.welcome"], "flagging removed the subscription"
    cleaner = shop.start("shop_analytics", ROCKETMAN_SUBSCRIPTION_EXPIRE_AFTER="1")
    cleaner.wait_for_log("removed the subscription mailer.welcome")
    assert [s["name"] for s in json.loads(shop.cli("subscriptions", "--json").stdout)] == [
        "analytics.count"]
    for worker in (watcher, cleaner):
        assert worker.terminate() == 0
        assert worker.log().count("has had no live host") <= 1, "the stale line repeats"


def test_a_worker_for_a_subscription_whose_pattern_changed_logs_the_change(shop: Shop) -> None:
    """A newer deployment registers billing.book on another pattern: the newest wins, logged."""
    first = shop.start("shop_billing")
    assert first.terminate() == 0
    (shop.directory / "shop_billing_v2.py").write_text(MODULES["shop_billing"].replace(
        '"invoice.paid"', '"invoice.*"'))
    second = shop.start("shop_billing_v2")
    second.wait_for_log("subscription billing.book now matches 'invoice.*' (it matched 'invoice.paid')")
    voided = shop.web.emit("invoice.voided", {})
    shop.wait_handled({"billing.book": {voided}})
    assert second.terminate() == 0
