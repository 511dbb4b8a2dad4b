"""Hosting subscriptions: register this process's consumers in the storage, and keep them alive.

A process with workers *hosts* the subscriptions of its consumers: it
registers them with :meth:`Storage.subscribe` when its workers start (and
when a consumer is added later), reserves only their deliveries, and tells
the storage every few seconds that it is still there
(:meth:`Storage.keep_alive`), so that operators see which processes host
what, and when a subscription was last hosted. The same heartbeat thread
renews the leases of the deliveries the workers hold.

The runtime builds one :class:`Hosting` when its workers start, and stops it
when they stop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._backends import StorageFeatures
from ._config import Settings
from ._consumers import Consumers
from ._contracts import Delivery, Storage, Subscription
from ._text import duration, plural
from ._urls import mask_url

__all__ = ["KEEP_ALIVE_INTERVAL", "LIVE_WITHIN", "Hosting", "new_host_id"]

logger = logging.getLogger("rocketman")

#: Seconds between two keep-alives of a hosting process.
KEEP_ALIVE_INTERVAL = 5.0
#: A host seen within this many seconds counts as live.
LIVE_WITHIN = 6 * KEEP_ALIVE_INTERVAL
#: Seconds between two looks for stale subscriptions, by each hosting process.
STALE_CHECK_INTERVAL = 60.0
#: Consumers added to running workers in a burst (a loop, a plugin loading
#: many) change the set the workers reserve for once the burst is quiet for
#: this many seconds, or every REHOST_AT_MOST seconds while it lasts: each
#: change makes every worker start its reserve again on every hosted name,
#: so a thousand consumers registered in a loop cost two changes, not a
#: thousand. A consumer added alone is reserved for at once.
REHOST_QUIET = 0.05
REHOST_AT_MOST = 1.0


def new_host_id() -> str:
    """This process's name in the storage: ``hostname:pid:random``, unique per start."""
    if hasattr(os, "uname"):
        hostname = os.uname().nodename  # no socket import: this runs in every process
    else:  # pragma: no cover - Windows
        import socket

        hostname = socket.gethostname()
    return f"{hostname}:{os.getpid()}:{os.urandom(3).hex()}"


class Hosting:
    """The subscriptions one started runtime hosts: registered, reserved for, kept alive.

    ``lock`` is the runtime's lock, held by every change of what is hosted
    (the runtime holds it too while it starts and stops). After :meth:`stop`
    nothing is registered or hosted any more.
    """

    def __init__(self, storage: Storage, features: StorageFeatures, consumers: Consumers,
                 settings: Settings, lock: Any) -> None:
        self.storage = storage
        self.features = features
        self.consumers = consumers
        self.settings = settings
        self._lock = lock
        self._stopped = False
        #: This process's name in the storage.
        self.host_id = new_host_id()
        #: The names of the subscriptions the workers reserve for.
        self.hosted: tuple[str, ...] = ()
        self._registered: dict[str, Subscription] = {}
        self._unregistered = False  # a registration failed: the heartbeat tries again
        self._warned_unstable: set[str] = set()
        self._stale_logged: set[str] = set()
        self._hosting = threading.Condition(threading.Lock())
        self._rehosted_at = self._changed_at = 0.0
        self._rehost_timer: threading.Timer | None = None
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()

    # -- registering ---------------------------------------------------------

    def host(self, names: Sequence[str] | None = None) -> None:
        """Register the subscriptions of the consumers ``names`` (None: all), and host them.

        The storage learns of a new subscription at once (an event emitted
        next is routed to it); the workers reserve for it at once, or, in a
        burst of additions, when the burst pauses (:data:`REHOST_QUIET`).
        """
        if names is None:
            subscriptions = self.consumers.subscriptions()
        else:
            specs = map(self.consumers.by_name.get, names)
            subscriptions = [spec.subscription() for spec in specs if spec is not None]
        changed = [s for s in subscriptions if self._registered.get(s.name) != s]
        if changed:
            try:
                self._register(changed)
            except Exception as error:
                self._unregistered = True
                logger.error(
                    "could not register the subscriptions %s in the storage (%s); "
                    "trying again every %.0fs, events emitted meanwhile may miss new ones",
                    ", ".join(s.name for s in changed), mask_url(str(error)) or type(error).__name__,
                    KEEP_ALIVE_INTERVAL,
                )
        now = time.monotonic()
        in_burst = now - self._changed_at < REHOST_QUIET
        self._changed_at = now
        if names is None or not in_burst:
            self._rehost()
        elif self._rehost_timer is None:
            self._rehost_later(timer=False)

    def _rehost_later(self, timer: bool = True) -> None:
        """Rehost once the burst of changes pauses, or has lasted REHOST_AT_MOST; else look again."""
        with self._lock:
            self._rehost_timer = None
            if self._stopped:
                return
            now = time.monotonic()
            quiet_at = self._changed_at + REHOST_QUIET
            if timer and (now >= quiet_at or now >= self._rehosted_at + REHOST_AT_MOST):
                self._rehost()
                return
            wait = max(0.001, min(quiet_at, self._rehosted_at + REHOST_AT_MOST) - now)
            self._rehost_timer = threading.Timer(wait, self._rehost_later)
            self._rehost_timer.daemon = True
            self._rehost_timer.start()

    def _rehost(self) -> None:
        """Make the workers reserve for every registered consumer."""
        self._rehosted_at = time.monotonic()
        hosted = self.consumers.names()
        if hosted != self.hosted:
            self.hosted = hosted
            self.wake()
            if self.features.interrupt is not None:
                # Blocked reserves name the old set: let them start again with this one.
                self.features.interrupt()

    def _register(self, subscriptions: Sequence[Subscription]) -> None:
        durable = self.features.durable
        if durable:
            self._warn_unstable(subscriptions)
        registrations = self.storage.subscribe(subscriptions, self.host_id)
        for registration, subscription in zip(registrations, subscriptions, strict=False):
            patterns = " ".join(subscription.patterns)
            if registration.previous is not None:
                logger.warning(
                    "subscription %s now matches %r (it matched %r): the newest registration "
                    "wins, for every process hosting it", registration.name, patterns,
                    " ".join(registration.previous),
                )
            elif registration.created and durable:
                logger.info(
                    "subscription %s created on %r%s", registration.name, patterns,
                    f", with {plural(registration.parked, 'parked event')}" if registration.parked else "",
                )
            self._registered[subscription.name] = subscription
        self._unregistered = False

    def _warn_unstable(self, subscriptions: Sequence[Subscription]) -> None:
        for subscription in subscriptions:
            spec = self.consumers.by_name.get(subscription.name)
            if spec is None or spec.unstable is None or spec.name in self._warned_unstable:
                continue
            self._warned_unstable.add(spec.name)
            logger.warning(
                "consumer %s has no stable name (%s): on a shared storage its subscription is "
                "found by name, and another process or the next deploy will not find this "
                "one. Name it: @on_event(%r, name=\"...\")", spec.name, spec.unstable, spec.pattern,
            )

    def consumers_changed(self, names: tuple[str, ...] | None) -> None:
        """Host the consumers ``names`` just added or changed (None: all of them again)."""
        with self._lock:
            if not self._stopped:
                self.host(names)

    def wait_for_consumers(self, timeout: float) -> None:
        """Block a worker that has nothing to host until a consumer is added, or ``timeout``."""
        with self._hosting:
            if not self.hosted:
                self._hosting.wait(timeout)

    def wake(self) -> None:
        """Wake the workers waiting for consumers (what is hosted changed, or they are stopping)."""
        with self._hosting:
            self._hosting.notify_all()

    def stop(self) -> None:
        """Stop the heartbeat and tell the storage this process no longer hosts its subscriptions.

        For a clean stop, once the workers stopped. Idempotent.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._rehost_timer is not None:
                self._rehost_timer.cancel()
        self._heartbeat_stop.set()
        if not self.hosted:
            return
        try:
            self.storage.leave(self.host_id, self.hosted)
        except Exception as error:
            logger.debug("could not say this process stops hosting: %s", mask_url(str(error)))

    # -- the heartbeat -------------------------------------------------------

    def start_heartbeat(self, held: Callable[[], list[Delivery]]) -> None:
        """Renew the leases of what ``held()`` returns and keep the hosted subscriptions alive, on one daemon thread."""
        interval = self.features.renew_interval
        durable = self.features.durable
        if not interval and not durable:
            return  # a memory storage: nothing to renew, nobody else to tell
        tick = min(float(interval or KEEP_ALIVE_INTERVAL), KEEP_ALIVE_INTERVAL)
        stop = self._heartbeat_stop

        def beat() -> None:
            next_alive = time.monotonic() + KEEP_ALIVE_INTERVAL
            next_check = time.monotonic() + (1.0 if durable else float("inf"))
            while not stop.wait(tick):
                if interval:
                    self._renew(held())
                now = time.monotonic()
                if now >= next_alive:
                    next_alive = now + KEEP_ALIVE_INTERVAL
                    self._keep_alive()
                if now >= next_check:
                    next_check = now + STALE_CHECK_INTERVAL
                    self._check_stale()

        self._heartbeat = threading.Thread(target=beat, name="rocketman-heartbeat", daemon=True)
        self._heartbeat.start()

    def _renew(self, held: list[Delivery]) -> None:
        if not held:
            return
        try:
            self.storage.renew(held)
        except Exception as error:
            logger.warning("could not renew the leases of %s: %s",
                           plural(len(held), "message"), mask_url(str(error)))

    def _keep_alive(self) -> None:
        try:
            if self._unregistered:
                self.consumers_changed(None)
            missing = self.storage.keep_alive(self.host_id, self.hosted)
        except Exception as error:
            logger.debug("keep-alive failed: %s", mask_url(str(error)))
            return
        if missing:
            logger.warning(
                "the subscriptions %s are no longer in the storage while this process hosts them "
                "(removed, or the storage lost its data); registering them again. To retire a "
                "subscription, stop the processes that host it first", ", ".join(missing),
            )
            with self._lock:
                for name in missing:
                    self._registered.pop(name, None)
            self.consumers_changed(None)

    def _check_stale(self) -> None:
        settings, storage = self.settings, self.storage
        try:
            infos = storage.subscriptions()
        except Exception as error:
            logger.debug("could not list subscriptions: %s", mask_url(str(error)))
            return
        now = time.time()
        for info in infos:
            if info.name in self.hosted:
                continue
            seen = info.last_seen if info.last_seen is not None else info.created_at
            idle = now - seen
            expire = settings.subscription_expire_after
            if expire and idle > expire:
                try:
                    removed = storage.unsubscribe(info.name)
                except Exception as error:
                    logger.warning("could not remove the stale subscription %s: %s",
                                   info.name, mask_url(str(error)))
                    continue
                if removed:
                    logger.warning(
                        "removed the subscription %s with its backlog (%s): no process hosted "
                        "it for %s (subscription_expire_after=%gs)", info.name,
                        ", ".join(f"{k} {v}" for k, v in info.counts.items()), duration(idle), expire,
                    )
                continue
            if idle > settings.subscription_stale_after and info.name not in self._stale_logged:
                self._stale_logged.add(info.name)
                queued = info.counts.get("queued", 0)
                logger.warning(
                    "subscription %s on %r has had no live host for %s, and %s wait for "
                    "it: start a process that hosts it, or retire it with `rocketman "
                    "subscriptions remove %s`", info.name, " ".join(info.patterns), duration(idle),
                    plural(queued, "event"), info.name,
                )
