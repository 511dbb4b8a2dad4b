"""Hosting subscriptions: register this process's consumers in the storage, and keep them alive.

A process with workers *hosts* the subscriptions of its consumers: it
registers them with :meth:`Storage.subscribe` when its workers start (and
when a consumer is added later), reserves only their deliveries, and tells
the storage every few seconds that it is still there
(:meth:`Storage.keep_alive`), so that operators see which processes host
what, and when a subscription was last hosted. The same heartbeat thread
renews the leases of the deliveries the workers hold.

A mixin of :class:`rocketman_core.Rocketman`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from ._config import Settings
from ._consumers import Consumers
from ._contracts import Storage, Subscription
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
    """Registering and keeping alive the subscriptions this process hosts."""

    consumers: Consumers
    _lock: Any
    _storage: Storage | None
    _workers_running: bool
    _held: dict[int, Sequence[Any]]
    _heartbeat: threading.Thread | None
    _heartbeat_stop: threading.Event

    @property
    def settings(self) -> Settings:
        raise NotImplementedError  # provided by Rocketman

    def _reset_hosting(self) -> None:
        self._host = new_host_id()
        self._hosted: tuple[str, ...] = ()
        self._registered: dict[str, Subscription] = {}
        self._unregistered = False  # a registration failed: the heartbeat tries again
        self._warned_unstable: set[str] = set()
        self._stale_logged: set[str] = set()
        self._hosting = threading.Condition(threading.Lock())
        self._rehosted_at = self._changed_at = 0.0
        self._rehost_timer: threading.Timer | None = None

    # -- registering ---------------------------------------------------------

    def _host_consumers(self, storage: Storage, names: Sequence[str] | None = None) -> None:
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
                self._register(storage, changed)
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
            self._rehost(storage)
        elif self._rehost_timer is None:
            self._rehost_later(storage, timer=False)

    def _rehost_later(self, storage: Storage, timer: bool = True) -> None:
        """Rehost once the burst of changes pauses, or has lasted REHOST_AT_MOST; else look again."""
        with self._lock:
            self._rehost_timer = None
            if self._storage is not storage or not self._workers_running:
                return
            now = time.monotonic()
            quiet_at = self._changed_at + REHOST_QUIET
            if timer and (now >= quiet_at or now >= self._rehosted_at + REHOST_AT_MOST):
                self._rehost(storage)
                return
            wait = max(0.001, min(quiet_at, self._rehosted_at + REHOST_AT_MOST) - now)
            self._rehost_timer = threading.Timer(wait, self._rehost_later, (storage,))
            self._rehost_timer.daemon = True
            self._rehost_timer.start()

    def _rehost(self, storage: Storage) -> None:
        """Make the workers reserve for every registered consumer."""
        self._rehosted_at = time.monotonic()
        hosted = self.consumers.names()
        if hosted != self._hosted:
            self._hosted = hosted
            with self._hosting:
                self._hosting.notify_all()
            interrupt = getattr(storage, "interrupt", None)
            if interrupt is not None:
                # Blocked reserves name the old set: let them start again with this one.
                interrupt()

    def _register(self, storage: Storage, subscriptions: Sequence[Subscription]) -> None:
        durable = bool(getattr(storage, "durable", False))
        if durable:
            self._warn_unstable(subscriptions)
        registrations = storage.subscribe(subscriptions, self._host)
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

    def _leave(self, storage: Storage) -> None:
        """Tell the storage this process no longer hosts its subscriptions (a clean stop)."""
        if not self._hosted:
            return
        try:
            storage.leave(self._host, self._hosted)
        except Exception as error:
            logger.debug("could not say this process stops hosting: %s", mask_url(str(error)))

    def _consumers_changed(self, names: tuple[str, ...] | None) -> None:
        storage = self._storage
        if storage is None or not self._workers_running:
            return
        with self._lock:
            if self._storage is storage and self._workers_running:
                self._host_consumers(storage, names)

    def _wait_for_consumers(self, timeout: float) -> None:
        """Block a worker that has nothing to host until a consumer is added, or ``timeout``."""
        with self._hosting:
            if not self._hosted:
                self._hosting.wait(timeout)

    def _wake_hosting(self) -> None:
        with self._hosting:
            self._hosting.notify_all()

    # -- the heartbeat -------------------------------------------------------

    def _start_heartbeat(self, storage: Storage) -> None:
        """Renew held leases and keep the hosted subscriptions alive, on one daemon thread."""
        interval = getattr(storage, "renew_interval", None)
        durable = bool(getattr(storage, "durable", False))
        if not interval and not durable:
            return  # a memory storage: nothing to renew, nobody else to tell
        tick = min(float(interval or KEEP_ALIVE_INTERVAL), KEEP_ALIVE_INTERVAL)
        self._heartbeat_stop = stop = threading.Event()

        def beat() -> None:
            next_alive = time.monotonic() + KEEP_ALIVE_INTERVAL
            next_check = time.monotonic() + (1.0 if durable else float("inf"))
            while not stop.wait(tick):
                if interval:
                    self._renew(storage)
                now = time.monotonic()
                if now >= next_alive:
                    next_alive = now + KEEP_ALIVE_INTERVAL
                    self._keep_alive(storage)
                if now >= next_check:
                    next_check = now + STALE_CHECK_INTERVAL
                    self._check_stale(storage)

        self._heartbeat = threading.Thread(target=beat, name="rocketman-heartbeat", daemon=True)
        self._heartbeat.start()

    def _renew(self, storage: Storage) -> None:
        held = [d for batch in list(self._held.values()) for d in batch]
        if not held:
            return
        try:
            storage.renew(held)
        except Exception as error:
            logger.warning("could not renew the leases of %s: %s",
                           plural(len(held), "message"), mask_url(str(error)))

    def _keep_alive(self, storage: Storage) -> None:
        try:
            if self._unregistered:
                with self._lock:
                    self._host_consumers(storage)
            missing = storage.keep_alive(self._host, self._hosted)
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
                self._host_consumers(storage)

    def _check_stale(self, storage: Storage) -> None:
        settings = self.settings
        try:
            infos = storage.subscriptions()
        except Exception as error:
            logger.debug("could not list subscriptions: %s", mask_url(str(error)))
            return
        now = time.time()
        for info in infos:
            if info.name in self._hosted:
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
