"""The NATS relay: core-NATS subscriptions whose messages become rocketman events.

nats-py is asyncio, rocketman is threads: the relay runs its own event loop on
its own daemon thread, so that ``start`` returns at once and the application
needs no event loop of its own. ``stop`` wakes that loop from the caller's
thread (``call_soon_threadsafe``), which drains the subscriptions, closes the
connection and lets the thread end.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rocketman_core import EmitFunction, mask_url
from rocketman_core.plugin import RateLimitedLog, option_integer, option_seconds

from ._messages import Dropped, event_name, parse_subjects, payload_of

if TYPE_CHECKING:
    import asyncio

    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["COUNTERS", "NatsRelay"]

logger = logging.getLogger("rocketman.relay.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"
#: The NATS server's own default ``max_payload``: nothing larger arrives anyway.
DEFAULT_MAX_BYTES = 1024 * 1024

#: The keys of :meth:`NatsRelay.stats`.
COUNTERS = (
    "received",
    "emitted",
    "invalid_utf8",
    "invalid_name",
    "oversize",
    "emit_failed",
    "disconnects",
    "reconnects",
)

# A flood of bad messages must not flood the log: each kind of problem is
# logged at WARNING at most once in this many seconds (with how many were
# held back since the last), and at DEBUG every time.
_WARN_EVERY = 60.0


class NatsRelay:
    """Subscribes to NATS subjects and emits each message as a rocketman event.

    The event is named after the subject (less ``prefix``); its payload is the
    body decoded as JSON, or the body as text when it is not JSON. Messages
    that are not UTF-8, whose subject gives no valid event name, or longer
    than ``max_bytes`` are dropped, logged and counted (:meth:`stats`).

    Options arrive as strings when they come from a URL's query string
    (``relays=["nats://127.0.0.1:4222?subjects=orders.>"]``):

    :param url: the NATS server, ``nats://[user:password@]host:port`` or
        ``tls://...`` for TLS.
    :param subjects: comma-separated subjects to subscribe to, wildcards
        allowed (``orders.>,billing.*``); default ``>``, every subject.
    :param prefix: stripped from the start of a subject to make the event
        name (``prefix="orders."``: ``orders.created`` -> ``created``).
    :param queue: a NATS queue group: relays in several processes that share
        it receive each message once between them, instead of once each.
    :param max_bytes: the largest body relayed; larger ones are dropped.
    :param reconnect_wait: seconds between attempts to reach the server.
    :param connect_timeout: seconds one attempt to connect may take.
    :param name: the connection name the NATS server shows for this client.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        subjects: str | list[str] | tuple[str, ...] = ">",
        prefix: str = "",
        queue: str = "",
        max_bytes: int | str = DEFAULT_MAX_BYTES,
        reconnect_wait: float | str = 2.0,
        connect_timeout: float | str = 2.0,
        name: str = "rocketman-relay",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(
                f"option 'url' must be nats://host:port or tls://host:port, not {mask_url(url)!r}"
            )
        self.url = url
        self.subjects = parse_subjects(subjects)
        self.prefix = prefix
        self.queue = queue
        self.max_bytes = option_integer("max_bytes", max_bytes, minimum=1)
        self.reconnect_wait = option_seconds("reconnect_wait", reconnect_wait, exclusive=True)
        self.connect_timeout = option_seconds("connect_timeout", connect_timeout, exclusive=True)
        self.name = name
        self._where = mask_url(url)
        # A missing nats-py fails when the relay is built (configuration),
        # not later in a background thread where only a log would show it.
        importlib.import_module("nats")

        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._emit: EmitFunction | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._stop_deadline = 0.0
        self._subscribed = threading.Event()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._log = RateLimitedLog(logger, _WARN_EVERY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected_once = False
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"NatsRelay({self._where!r}, subjects={','.join(self.subjects)!r})"

    # -- the Relay contract (called from the application's threads) -------

    def start(self, emit: EmitFunction) -> None:
        """Connect and subscribe in the background; return at once.

        An unreachable server is retried every ``reconnect_wait`` seconds and
        logged; it never raises here. Starting a running relay is a
        ``RuntimeError``; a stopped relay starts again: it connects and
        subscribes anew, and calls the new ``emit`` only.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"{self!r} is already running; stop it first")
            # A new session: nothing of the last one's loop or connection.
            self._emit = emit
            self._stopping = False
            self._loop = None
            self._wake = None
            self._client = None
            self._connected_once = False
            self._subscribed.clear()
            self._thread = threading.Thread(
                target=self._run, name="rocketman-relay-nats", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Drain the subscriptions, close the connection, end the thread.

        Messages already received are emitted first if ``timeout`` allows.
        Returns within ``timeout`` seconds (or waits for the thread when it
        is None); a thread still running then is logged, and ends on its own
        as a daemon. Idempotent; a relay never started has nothing to stop.
        """
        budget = 10.0 if timeout is None else max(0.0, timeout)
        with self._lock:
            thread = self._thread
            if not self._stopping:
                self._stopping = True
                self._stop_deadline = time.monotonic() + budget
            loop, wake = self._loop, self._wake
        if thread is None:
            return
        if thread is threading.current_thread():
            # Called from emit (an inline consumer shutting rocketman down):
            # the loop stops once this callback returns; joining would deadlock.
            if loop is not None and wake is not None:
                loop.call_soon(wake.set)
            return
        if loop is not None and wake is not None:
            # RuntimeError: the loop already closed, the thread is ending.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the NATS relay for %s did not stop within %.1fs", self._where, budget)

    # -- what applications and tests may read ------------------------------

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the server has the relay's subscriptions, or ``timeout``.

        Messages published before that are not received (core NATS keeps no
        messages for subscribers to come). Returns False on timeout, and
        while the relay is reconnecting.
        """
        return self._subscribed.wait(timeout)

    @property
    def subscribed(self) -> bool:
        """True while connected with every subscription confirmed by the server."""
        return self._subscribed.is_set()

    @property
    def running(self) -> bool:
        """True while the relay's thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stats(self) -> dict[str, int]:
        """Counts since the relay was built (over every start), with the keys of :data:`COUNTERS`.

        ``received`` = ``emitted`` + the drops (``invalid_utf8``,
        ``invalid_name``, ``oversize``) + ``emit_failed``.
        """
        with self._lock:
            return dict(self._counts)

    # -- the relay's thread ------------------------------------------------

    def _run(self) -> None:
        import asyncio

        # Not asyncio.run(): its shutdown waits without a bound for every task
        # it cancels, and a task of nats-py's may not end (see _serve).
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except Exception as error:
            # Nothing above this thread would see it: log it, masked.
            logger.error("the NATS relay for %s stopped on an error: %s",
                         self._where, _masked_traceback(error))
        finally:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=0.2))
            loop.close()
            self._subscribed.clear()
            logger.info("NATS relay for %s stopped", self._where)

    async def _serve(self) -> None:
        import asyncio

        from nats.aio.client import Client as NatsClient

        wake = asyncio.Event()
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake = wake
            if self._stopping:  # stop() came before the loop existed
                wake.set()
        client: Client | None = None
        while not wake.is_set():
            client = self._client = NatsClient()
            connecting = asyncio.create_task(self._connect(client))
            stopping = asyncio.create_task(wake.wait())
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not connecting.done():
                # nats-py's connect retries in a loop that can swallow one
                # cancellation (in its own clean-up after a failed attempt,
                # as when a server accepts and hangs up): cancel until it
                # ends, within what stop() allows.
                while not connecting.done() and time.monotonic() < self._stop_deadline:
                    connecting.cancel()
                    await asyncio.wait({connecting}, timeout=0.05)
                if not connecting.done():
                    break
            await asyncio.gather(connecting, stopping, return_exceptions=True)
            if connecting.cancelled():
                break
            error = connecting.exception()
            if error is None:
                await wake.wait()
                break
            # nats-py retries an unreachable server itself; what lands here is
            # a failure after the connection (a subscription, a flush).
            logger.warning("the NATS relay for %s failed to subscribe, retrying in %.1fs: %s",
                           self._where, self.reconnect_wait, mask_url(str(error) or repr(error)))
            await self._close(client)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), self.reconnect_wait)
        if client is not None:
            await self._close(client)

    async def _connect(self, client: Client) -> None:
        # nats-py's annotations say int for the two durations, but it only
        # sleeps and waits with them: floats work, and tests use short ones.
        options: dict[str, Any] = {
            "reconnect_time_wait": self.reconnect_wait,
            "connect_timeout": self.connect_timeout,
        }
        await client.connect(
            self.url,
            name=self.name,
            # Never give up: a relay outlives outages of its server.
            max_reconnect_attempts=-1,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **options,
        )
        for subject in self.subjects:
            await client.subscribe(subject, queue=self.queue, cb=self._on_message)
        await self._confirm_subscribed(client)
        self._connected_once = True
        logger.info("NATS relay connected to %s, subscribed to %s",
                    self._where, ", ".join(self.subjects))

    async def _confirm_subscribed(self, client: Client) -> None:
        # A flush is a PING answered by a PONG after the server processed
        # every SUB sent before it: then the subscriptions are in place.
        await client.flush(timeout=max(1, round(self.connect_timeout)))
        self._subscribed.set()

    async def _close(self, client: Client) -> None:
        import asyncio

        remaining = max(0.05, self._stop_deadline - time.monotonic()) if self._stopping else 1.0
        try:
            if client.is_connected:
                # drain() hands the messages already received to _on_message
                # before it closes: they are emitted, not lost.
                await asyncio.wait_for(client.drain(), remaining * 0.7)
        except Exception as error:  # a timeout or a connection lost meanwhile
            logger.debug("NATS relay for %s: drain failed: %r", self._where, error)
        try:
            if not client.is_closed:
                await asyncio.wait_for(client.close(), max(0.05, remaining * 0.3))
        except Exception as error:
            logger.debug("NATS relay for %s: close failed: %r", self._where, error)
        self._subscribed.clear()

    # -- nats-py callbacks (on the relay's loop) ----------------------------

    async def _on_message(self, message: Msg) -> None:
        self._count("received")
        try:
            name = event_name(message.subject, self.prefix)
            payload = payload_of(message.data, self.max_bytes)
        except Dropped as dropped:
            self._count(dropped.reason)
            self._warn(dropped.reason, "NATS relay dropped a message on %r: %s",
                       message.subject, dropped.detail)
            return
        emit = self._emit
        assert emit is not None, "start() sets emit before the loop runs"
        try:
            # emit runs here, on the loop: it returns once the storage holds
            # the event, which keeps the subject's order and slows the
            # subscription down to what the storage takes (nats-py buffers
            # the rest, up to its pending limits).
            emit(name, payload)
        except Exception as error:
            self._count("emit_failed")
            self._warn("emit_failed", "NATS relay could not emit %r, the message is lost: %s",
                       name, _masked_traceback(error))
            return
        self._count("emitted")

    async def _on_error(self, error: Exception) -> None:
        import asyncio

        kind = type(error).__name__
        # asyncio.TimeoutError is the builtin one only from Python 3.11 on.
        unreachable = (OSError, TimeoutError, asyncio.TimeoutError)
        if not self._connected_once and isinstance(error, unreachable):
            self._warn("unreachable", "NATS relay cannot reach %s (%s); retrying every %.1fs",
                       self._where, mask_url(str(error) or kind), self.reconnect_wait)
            return
        self._warn(f"error:{kind}", "NATS relay for %s: %s: %s",
                   self._where, kind, mask_url(str(error)))

    async def _on_disconnected(self) -> None:
        self._subscribed.clear()
        if self._stopping or not self._connected_once:
            return
        self._count("disconnects")
        logger.warning("NATS relay lost its connection to %s; reconnecting (messages "
                       "published meanwhile are not received)", self._where)

    async def _on_reconnected(self) -> None:
        import asyncio

        self._count("reconnects")
        logger.warning("NATS relay reconnected to %s", self._where)
        client = self._client
        if client is None:
            return
        # nats-py re-sends the subscriptions itself; confirming them needs a
        # round trip, which must not run inside the reconnecting task.
        task = asyncio.create_task(self._confirm_after_reconnect(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm_after_reconnect(self, client: Client) -> None:
        try:
            await self._confirm_subscribed(client)
        except Exception as error:
            logger.debug("NATS relay for %s: confirming subscriptions failed: %r",
                         self._where, error)

    # -- counting and logging ------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        self._log.log(kind, logging.WARNING, message, *args)


def _masked_traceback(error: BaseException) -> str:
    return mask_url("".join(traceback.format_exception(type(error), error, error.__traceback__)))
