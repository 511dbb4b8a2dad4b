"""The Redis relay: Redis PUBLISH in, ``emit`` out, on a thread of its own.

One thread holds one dedicated pub/sub connection. It reads with a timeout
(``latency``) so that ``stop`` is seen promptly, PINGs Redis after a silence
so that a half-dead connection is noticed, and on any failure closes the
connection, waits (exponential backoff with jitter) and subscribes again. It
never ends on its own: only ``stop`` ends it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rocketman_core import BacklogFull, EmitFunction, mask_url
from rocketman_core.plugin import RateLimitedLog

from ._connection import (
    Unresponsive,
    close_quietly,
    describe,
    is_redis_error,
    make_client,
    other_relays,
)
from ._messages import DROP_REASONS, Dropped, translate
from ._options import DEFAULT_MAX_BYTES, RelayOptions, resolve

if TYPE_CHECKING:
    import redis
    import redis.client

__all__ = ["STATS_KEYS", "THREAD_NAME", "RedisRelay"]

logger = logging.getLogger("rocketman.relay.redis")

#: The name of the relay's thread.
THREAD_NAME = "rocketman-relay-redis"
#: The keys of :meth:`RedisRelay.stats`.
STATS_KEYS = (
    "received",
    "emitted",
    "dropped",
    *(f"dropped_{reason}" for reason in DROP_REASONS),
    "connections",
    "disconnections",
    "failed_attempts",
)

# Our own PING text: redis-py swallows the answer to its own health-check
# PING, and the relay needs to see the answer to know Redis is alive.
_PING_TEXT = "rocketman-relay-ping"
# A flood of bad messages must not become a flood of log records.
_LOG_PERIOD = 10.0


class RedisRelay:
    """Relays what is PUBLISHed to Redis as rocketman events.

    ``PUBLISH hello payload`` becomes ``emit("hello", "payload")``; a message
    that is valid JSON becomes its JSON value. Build it with options, then
    ``start(emit)``; the core does both for ``relays=["redis"]``.

    :param url: the Redis URL (``redis://``, ``rediss://``, ``unix://``);
        by default ``ROCKETMAN_REDIS_URL``, else ``redis://localhost:6379/0``.
    :param client_factory: instead of ``url``, a callable returning a
        ``redis.Redis`` (with ``decode_responses=False``); the relay takes its
        own pub/sub connection from that client's pool and never closes the
        client.
    :param pattern: a glob pattern to PSUBSCRIBE to (``"orders.*"``); by
        default ``*``, everything (``prefix*`` when a prefix is given).
    :param patterns: several patterns, a list or a comma-separated string.
    :param channels: exact channel names to SUBSCRIBE to, a list or a
        comma-separated string.
    :param prefix: stripped from channel names (``app.hello`` -> ``hello``);
        messages on channels without it are dropped.
    :param max_bytes: the largest message relayed (default 1 MiB); longer
        ones are dropped.
    :param db: the database for a ``unix://`` URL (pub/sub ignores it).
    :param latency: the longest ``stop`` waits for a read to return, in seconds.
    :param health_check_interval: after this many seconds of silence the relay
        PINGs Redis (0: never).
    :param socket_timeout: the bound on connecting, on each command and on
        the answer to a PING, in seconds.
    :param backoff: the first reconnection delay, doubled at each failure.
    :param backoff_max: the longest reconnection delay, in seconds.

    Options from a relay URL arrive as strings and are converted; a bad one
    raises ``ValueError`` naming it. Nothing connects before :meth:`start`.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client_factory: Callable[[], redis.Redis] | None = None,
        pattern: str | Iterable[str] | None = None,
        patterns: str | Iterable[str] | None = None,
        channels: str | Iterable[str] | None = None,
        prefix: str | None = None,
        max_bytes: int | str = DEFAULT_MAX_BYTES,
        db: int | str | None = None,
        latency: float | str = 0.5,
        health_check_interval: float | str = 5.0,
        socket_timeout: float | str = 5.0,
        backoff: float | str = 0.1,
        backoff_max: float | str = 30.0,
    ) -> None:
        if client_factory is not None and not callable(client_factory):
            raise ValueError("client_factory must be a callable returning a redis.Redis client")
        self.options: RelayOptions = resolve(
            url=url, has_client_factory=client_factory is not None, pattern=pattern,
            patterns=patterns, channels=channels, prefix=prefix, max_bytes=max_bytes, db=db,
            latency=latency, health_check_interval=health_check_interval,
            socket_timeout=socket_timeout, backoff=backoff, backoff_max=backoff_max,
        )
        self._client_factory = client_factory
        self._label = mask_url(self.options.url) if self.options.url else "client_factory()"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._counts: dict[str, int] = dict.fromkeys(STATS_KEYS, 0)
        self._drops_log = RateLimitedLog(logger, _LOG_PERIOD)
        # Touched only by the relay's thread.
        self._failures = 0
        self._down_since: float | None = None
        self._peers_checked = False

    def __repr__(self) -> str:
        state = "subscribed" if self.subscribed else "running" if self.running else "stopped"
        return f"<RedisRelay {self._label} {self._describe_subscriptions()} {state}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self, emit: EmitFunction) -> None:
        """Start listening on a daemon thread, calling ``emit(name, payload)``.

        Returns at once: connecting happens on the thread, which keeps trying
        (and logging) while Redis is unreachable. Raises ``RuntimeError`` if
        the relay is already running, ``ImportError`` if ``redis`` is missing.
        """
        import redis  # noqa: F401 - a missing library fails here, not on the thread

        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(f"{self!r} is already running; stop it first")
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(emit, self._stopping), name=THREAD_NAME, daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop listening and wait up to ``timeout`` seconds for the thread to end.

        The thread notices within ``latency`` (or, while it connects, within
        ``socket_timeout``). Idempotent; a stopped relay can be started again.
        """
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping.set()
        if thread is threading.current_thread():
            return  # called from a consumer run by emit on the relay's thread: it ends after
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the redis relay on %s did not stop within %ss", self._label, timeout)
            return
        with self._lock:
            if self._thread is thread:
                self._thread = None

    @property
    def running(self) -> bool:
        """Whether the relay's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def subscribed(self) -> bool:
        """Whether Redis has confirmed every subscription and the connection is up."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Block until the relay listens (Redis confirmed its subscriptions).

        Messages published before that are not received: Redis pub/sub keeps
        nothing for absent subscribers. Returns False when ``timeout`` passed.
        """
        return self._subscribed.wait(timeout)

    def stats(self) -> dict[str, int]:
        """Counters since the relay was built, with the keys of ``STATS_KEYS``.

        ``received``: messages read from Redis; ``emitted``: handed to
        ``emit``; ``dropped``: the sum of the ``dropped_<reason>`` counters
        (``too_large``, ``not_utf8``, ``no_prefix``, ``bad_name``,
        ``backlog_full``, ``emit_failed``); ``connections``: subscriptions confirmed;
        ``disconnections``: live connections lost; ``failed_attempts``:
        attempts to connect and subscribe that failed.
        """
        counts = dict(self._counts)
        counts["dropped"] = sum(counts[f"dropped_{reason}"] for reason in DROP_REASONS)
        return counts

    # -- the thread --------------------------------------------------------

    def _run(self, emit: EmitFunction, stopping: threading.Event) -> None:
        client: redis.Redis | None = None
        logger.debug("redis relay starting on %s", self._label)
        try:
            while not stopping.is_set():
                try:
                    if client is None:
                        client = self._make_client()
                    self._session(client, emit, stopping)
                except Exception as error:  # the relay must outlive any failure
                    self._after_failure(error, stopping)
        finally:
            self._subscribed.clear()
            if client is not None and self._client_factory is None:
                close_quietly(client)
            stats = self.stats()
            logger.info(
                "redis relay on %s stopped: %d received, %d emitted, %d dropped",
                self._label, stats["received"], stats["emitted"], stats["dropped"],
            )

    def _make_client(self) -> redis.Redis:
        if self._client_factory is not None:
            return self._client_factory()
        return make_client(self.options)

    def _session(self, client: redis.Redis, emit: EmitFunction, stopping: threading.Event) -> None:
        """Subscribe, then relay until ``stopping``; raise when the connection fails."""
        options = self.options
        # redis-py before 8.2 leaves pubsub() unannotated: typed here, for both.
        open_pubsub: Callable[..., redis.client.PubSub] = client.pubsub
        pubsub = open_pubsub(ignore_subscribe_messages=False)
        try:
            if options.patterns:
                pubsub.psubscribe(*options.patterns)
            if options.channels:
                pubsub.subscribe(*options.channels)
            self._listen(pubsub, client, emit, stopping)
        finally:
            close_quietly(pubsub)

    def _listen(
        self,
        pubsub: redis.client.PubSub,
        client: redis.Redis,
        emit: EmitFunction,
        stopping: threading.Event,
    ) -> None:
        options = self.options
        confirmed = 0
        started = last_heard = time.monotonic()
        ping_sent: float | None = None
        while not stopping.is_set():
            now = time.monotonic()
            if confirmed < options.subscriptions:
                if now - started > options.socket_timeout:
                    raise Unresponsive(
                        f"Redis did not confirm the subscriptions within {options.socket_timeout}s"
                    )
            elif ping_sent is not None:
                if now - ping_sent > options.socket_timeout:
                    raise Unresponsive(f"no answer to PING within {options.socket_timeout}s")
            elif options.health_check_interval and now - last_heard >= options.health_check_interval:
                pubsub.ping(_PING_TEXT)
                ping_sent = now
            message = pubsub.get_message(timeout=options.latency)
            if message is None:
                continue
            last_heard = time.monotonic()
            kind = message["type"]
            if kind in ("message", "pmessage"):
                self._relay(emit, message["channel"], message["data"])
            elif kind == "pong":
                ping_sent = None
            elif kind in ("subscribe", "psubscribe"):
                confirmed += 1
                if confirmed == options.subscriptions:
                    self._on_subscribed(client)

    def _relay(self, emit: EmitFunction, channel: bytes | str, data: bytes | str) -> None:
        self._counts["received"] += 1
        outcome = translate(channel, data, prefix=self.options.prefix, max_bytes=self.options.max_bytes)
        if isinstance(outcome, Dropped):
            self._drop(outcome.reason, channel, outcome.detail)
            return
        try:
            emit(outcome.name, outcome.payload)
        except ValueError as error:
            # emit's own check of the name (payloads parsed from JSON are
            # always encodable): the core decides what a valid name is.
            self._drop("bad_name", channel, str(error))
        except BacklogFull as error:  # the consumers are behind: drop now, never wait
            self._drop("backlog_full", channel, str(error))
        except Exception as error:  # the storage is down, full, ...: go on
            self._drop("emit_failed", channel, describe(error))
        else:
            self._counts["emitted"] += 1

    def _drop(self, reason: str, channel: bytes | str, detail: str) -> None:
        self._counts[f"dropped_{reason}"] += 1
        self._drops_log.log(
            reason, logging.ERROR if reason == "emit_failed" else logging.WARNING,
            "redis relay dropped a message on channel %s: %s", _show(channel), mask_url(detail),
        )

    def _on_subscribed(self, client: redis.Redis) -> None:
        self._counts["connections"] += 1
        if self._down_since is None:
            logger.info("redis relay listening on %s to %s", self._label, self._describe_subscriptions())
        else:
            logger.warning(
                "redis relay is back on %s after %.1fs; listening again to %s",
                self._label, time.monotonic() - self._down_since, self._describe_subscriptions(),
            )
        self._down_since = None
        self._failures = 0
        self._subscribed.set()
        if not self._peers_checked and self._client_factory is None:
            self._peers_checked = True
            self._warn_about_other_relays(client)

    def _after_failure(self, error: Exception, stopping: threading.Event) -> None:
        was_subscribed = self._subscribed.is_set()
        self._subscribed.clear()
        if stopping.is_set():
            return
        if not is_redis_error(error):
            # Not Redis saying no, nor the network: a bug; show where.
            logger.error(
                "redis relay on %s failed unexpectedly; it reconnects:\n%s",
                self._label, mask_url("".join(traceback.format_exception(error)).rstrip()),
            )
        if was_subscribed:
            self._counts["disconnections"] += 1
            self._down_since = time.monotonic()
            self._failures = 0
            logger.warning(
                "redis relay lost its connection to %s (%s); reconnecting",
                self._label, describe(error),
            )
        else:
            self._failures += 1
            self._counts["failed_attempts"] += 1
            if self._down_since is None:
                self._down_since = time.monotonic()
        delay = min(self.options.backoff_max, self.options.backoff * 2 ** min(self._failures, 32))
        delay *= random.uniform(0.5, 1.0)  # jitter: relays restarted together spread out
        if not was_subscribed:
            # Loud at the first failure and every tenth, so a Redis that
            # stays away (or an ACL that refuses) is not a silent retry loop.
            logger.log(
                logging.WARNING if self._failures == 1 or self._failures % 10 == 0 else logging.INFO,
                "redis relay cannot connect to %s (%s); attempt %d failed, next in %.1fs",
                self._label, describe(error), self._failures, delay,
            )
        stopping.wait(delay)

    def _warn_about_other_relays(self, client: redis.Redis) -> None:
        """Warn when other rocketman relays listen on this Redis: each emits every message."""
        others = other_relays(client)
        if others:
            logger.warning(
                "%d other rocketman redis relay(s) listen on %s: if they emit into the same "
                "storage as this one, every message becomes that many extra events. Run one "
                "relay (for example one `rocketman worker --relay redis` process).",
                others, self._label,
            )

    def _describe_subscriptions(self) -> str:
        parts = []
        if self.options.patterns:
            parts.append("patterns " + ", ".join(self.options.patterns))
        if self.options.channels:
            parts.append("channels " + ", ".join(self.options.channels))
        if self.options.prefix:
            parts.append(f"prefix {self.options.prefix!r} stripped")
        return "; ".join(parts)


def _show(channel: bytes | str) -> str:
    text = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
    return repr(text if len(text) <= 200 else text[:200] + "...")
