"""The Redis storage: a list for the queue, leases in a hash and a sorted set, Lua for the rest.

How a message moves (keys of :class:`~rocketman_redis.KeyLayout`):

* ``push``: ``LPUSH {ns}:queue`` (one round trip; ``push_many`` one LPUSH per
  thousand messages, pipelined in one round trip).
* ``reserve``: the TAKE script leases what is ready in one round trip; when
  nothing is, the worker blocks in ``BLMOVE {ns}:queue {ns}:taking`` (no
  polling) and runs TAKE again. BLMOVE *moves* the message, so a worker killed
  right after it loses nothing: the message waits in the shared ``taking``
  list, and the next TAKE of any worker leases it.
* a lease is a token in ``{ns}:reserved`` (token -> message) and
  ``{ns}:leases`` (token -> deadline on the server's clock); ``ack`` deletes
  both (O(1) per message), ``renew`` pushes the deadline back, and TAKE puts
  every expired lease's message back in the queue.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rocketman_core import mask_url

from . import _scripts
from ._dead_letters import DeadLetters
from ._errors import StorageError, StorageUnavailable
from ._options import connect
from ._wire import MAX_BATCH, Script, Wire

__all__ = ["RedisStorage"]

logger = logging.getLogger("rocketman.redis")

# Never ask BLMOVE for less: a timeout of 0 would block forever.
_MIN_BLOCK = 0.002
# How long a thread trusts that its last TAKE left the queue empty.
_HINT_FRESH = 0.5
_NEVER = float("inf")

_TAKE = Script(_scripts.TAKE)
_ACK = Script(_scripts.ACK)
_RELEASE = Script(_scripts.RELEASE)
_RENEW = Script(_scripts.RENEW)
_RETRY_LATER = Script(_scripts.RETRY_LATER)
_STATS = Script(_scripts.STATS)


class _Delivery:
    """A reserved message and the token of its lease."""

    __slots__ = ("acked", "message", "token")

    def __init__(self, message: bytes, token: str) -> None:
        self.message = message
        self.token = token
        self.acked = False

    def __repr__(self) -> str:
        return f"<redis delivery {self.token} ({len(self.message)} bytes)>"


class _ReserveHint(threading.local):
    """What a thread's last TAKE said: when, and when something falls due (None: queue not empty)."""

    took_at = float("-inf")
    wake_at: float | None = None
    retries = 0  # the storage's count of retry_later calls then: a new retry may fall due sooner


class RedisStorage(DeadLetters):
    """A durable queue in Redis, shared by every process that uses the same URL and namespace.

    At least once: a message pushed is delivered until a worker acknowledges
    it; a worker that dies (even SIGKILL) loses nothing, because what it held
    goes back to the queue when its lease expires. Thread-safe.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
        for TLS, or ``unix:///path/to/redis.sock[?db=N]``. Default: the
        ``ROCKETMAN_REDIS_URL`` environment variable, else
        ``redis://localhost:6379/0``. The query string may carry the options
        below, and redis-py's own (``ssl_cert_reqs=none``...).
    :param client: an existing ``redis.Redis`` (instead of ``url``); it must
        not decode responses. The storage does not close it.
    :param namespace: the prefix of every key, ``{namespace}:queue``...
        (default ``rocketman``). Applications sharing a Redis use their own.
    :param lease: seconds a reserved message may stay unacknowledged before
        it goes back to the queue for another worker (default 30). Workers
        renew the leases of the messages they hold every ``lease / 3``
        seconds, so only a dead or stalled worker loses its lease.
    :param connect_timeout: seconds to wait for a connection (default 2).
    :param socket_timeout: seconds to wait for an answer (default 5); a
        blocking reserve waits this much longer than it asked Redis to block.

    ``push`` on an unreachable Redis raises :class:`StorageUnavailable` after
    at most about ``2 * (connect_timeout + socket_timeout)``, never hangs.
    """

    #: What the storage holds outlives the process.
    durable = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        namespace: str | None = None,
        lease: float | str | None = None,
        connect_timeout: float | str | None = None,
        socket_timeout: float | str | None = None,
    ) -> None:
        connection = connect(url, client, {
            "namespace": namespace, "lease": lease,
            "connect_timeout": connect_timeout, "socket_timeout": socket_timeout,
        })
        self._client = connection.client
        self._owns_client = connection.owns_client
        #: Where the storage connects, credentials masked.
        self.url = connection.where
        #: The names of the namespace's keys.
        self.keys = connection.keys
        #: Seconds a reserved message stays leased without a renewal.
        self.lease = connection.lease
        #: How often the core renews the leases of held messages.
        self.renew_interval = self.lease / 3
        self.connect_timeout = connection.connect_timeout
        self.socket_timeout = connection.socket_timeout
        self._lease_ms = max(1, round(self.lease * 1000))
        keys = self.keys
        self._queue = keys.queue
        self._take_keys = (keys.queue, keys.taking, keys.reserved, keys.leases, keys.delayed)
        self._dead_keys = (keys.dead, keys.dead_messages, keys.dead_reasons, keys.dead_times)
        self._wire = Wire(self._client)
        self._local = _ReserveHint()
        # Lease tokens and retry tags: unique across processes without a
        # round trip (64 random bits per storage, then a counter).
        self._tag = os.urandom(8).hex()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._reserving = 0
        self._blocked: dict[int, float] = {}  # server client id -> when its BLMOVE times out
        self._interrupts = 0
        self._retries = 0
        self._closed = False

    # -- pushing ---------------------------------------------------------

    def push(self, message: bytes) -> None:
        """LPUSH one message into the queue: one round trip."""
        try:
            self._wire.call("LPUSH", self._queue, message)
        except RedisError as error:
            raise self._error("store an event", error) from error

    def push_many(self, messages: Sequence[bytes]) -> None:
        """Queue messages in order: LPUSHes of up to 1000 each, pipelined in one round trip."""
        if not messages:
            return
        try:
            if len(messages) <= MAX_BATCH:
                self._wire.call("LPUSH", self._queue, *messages)
            else:
                self._wire.call_many([
                    ("LPUSH", self._queue, *messages[start:start + MAX_BATCH])
                    for start in range(0, len(messages), MAX_BATCH)
                ])
        except RedisError as error:
            raise self._error(f"store {len(messages)} events", error) from error

    # -- reserving -------------------------------------------------------

    def reserve(self, timeout: float, max_count: int = 1) -> list[Any]:
        """Lease up to ``max_count`` ready messages, blocking up to ``timeout`` seconds.

        One round trip when messages are ready. Otherwise the thread blocks
        in BLMOVE, woken by a push, by the next retry or lease falling due,
        or by :meth:`interrupt`; it never polls.
        """
        count = max(1, min(int(max_count), MAX_BATCH))
        now = time.monotonic()
        deadline = now + timeout
        generation = self._interrupts
        local = self._local
        # When this thread's last TAKE, a moment ago, left the queue empty,
        # block at once: a TAKE now would most likely find nothing, and a
        # push since then makes the BLMOVE return at once anyway.
        wake_at: float | None = None
        if timeout > 0 and now - local.took_at < _HINT_FRESH and local.retries == self._retries:
            wake_at = local.wake_at
        with self._lock:
            self._reserving += 1
        try:
            while True:
                if wake_at is not None:
                    now = time.monotonic()
                    if deadline <= now or generation != self._interrupts:
                        return []
                    if wake_at > now:
                        try:
                            self._block(max(min(deadline, wake_at) - now, _MIN_BLOCK), generation)
                        except RedisError as error:
                            raise self._error("wait for events", error) from error
                prefix = f"{self._tag}:{next(self._counter)}:"
                try:
                    status, *taken = self._wire.run(
                        _TAKE, self._take_keys, (count, self._lease_ms, prefix, self._reserving))
                except RedisError as error:
                    raise self._error("take events from the queue", error) from error
                local.took_at = now = time.monotonic()
                local.retries = self._retries
                # status: -2 more are queued, -1 nothing falls due, else ms until something does.
                wake_at = None if status == -2 else _NEVER if status == -1 else now + status / 1000
                local.wake_at = wake_at
                if taken:
                    return [_Delivery(message, f"{prefix}{n}") for n, message in enumerate(taken, 1)]
                if wake_at is None:
                    # Queued messages, but none for us (others took them): look again.
                    wake_at = now
                if deadline <= now or generation != self._interrupts:
                    return []
        finally:
            with self._lock:
                self._reserving -= 1

    def _block(self, seconds: float, generation: int) -> None:
        """Block in BLMOVE queue -> taking for up to ``seconds``; the next TAKE leases what came.

        While it waits, the connection's client id is known, so that
        :meth:`interrupt` (and an earlier retry) can end the wait with
        CLIENT UNBLOCK.
        """
        blocked: list[int] = []

        def on_blocked(client_id: int | None) -> None:
            if client_id is None:
                return
            with self._lock:
                self._blocked[client_id] = time.monotonic() + seconds
                interrupted = generation != self._interrupts
            blocked.append(client_id)
            if interrupted:
                self._unblock([client_id])

        try:
            # The read timeout outlasts the block: a long wait is not a dead server.
            self._wire.block_move(self._queue, self.keys.taking, seconds, self.socket_timeout,
                                  on_blocked)
        finally:
            if blocked:
                with self._lock:
                    self._blocked.pop(blocked[0], None)

    def _unblock(self, client_ids: Sequence[int]) -> None:
        for client_id in client_ids:
            try:
                # TIMEOUT mode: the BLMOVE returns nil, nothing moved.
                self._client.client_unblock(client_id)
            except RedisError as error:  # CLIENT UNBLOCK is an admin command some ACLs forbid
                logger.debug("could not interrupt a blocked reserve: %s", mask_url(str(error)))
                return

    def interrupt(self) -> None:
        """Wake every ``reserve`` of this storage blocked now; they return ``[]``."""
        with self._lock:
            self._interrupts += 1
            blocked = list(self._blocked)
        self._unblock(blocked)

    def ack(self, deliveries: Sequence[Any]) -> None:
        """Forget the deliveries (one round trip); a second ack, or a lost lease, changes nothing."""
        tokens = [d.token for d in deliveries]
        if not tokens:
            return
        try:
            for start in range(0, len(tokens), MAX_BATCH):
                self._wire.run(_ACK, (self.keys.reserved, self.keys.leases),
                               tokens[start:start + MAX_BATCH])
        except RedisError as error:
            raise self._error(f"acknowledge {len(tokens)} events", error) from error
        for delivery in deliveries:
            delivery.acked = True

    def release(self, deliveries: Sequence[Any]) -> None:
        """Give unhandled deliveries back to the front of the queue now, in order."""
        tokens = [d.token for d in deliveries]
        if not tokens:
            return
        keys = (self._queue, self.keys.reserved, self.keys.leases)
        try:
            for start in range(0, len(tokens), MAX_BATCH):
                self._wire.run(_RELEASE, keys, tokens[start:start + MAX_BATCH])
        except RedisError as error:
            raise self._error(f"give back {len(tokens)} events", error) from error
        for delivery in deliveries:
            delivery.acked = True

    def renew(self, deliveries: Sequence[Any]) -> None:
        """Push the lease deadlines of held deliveries ``lease`` seconds past now (server clock)."""
        pending = [d for d in deliveries if not d.acked]
        tokens = [d.token for d in pending]
        if not tokens:
            return
        held = 0
        try:
            for start in range(0, len(tokens), MAX_BATCH):
                held += int(self._wire.run(_RENEW, (self.keys.leases,),
                                           (self._lease_ms, *tokens[start:start + MAX_BATCH])))
        except RedisError as error:
            raise self._error(f"renew {len(tokens)} leases", error) from error
        # Those acknowledged meanwhile were not lost, only done.
        lost = len(pending) - held - sum(1 for d in pending if d.acked)
        if lost > 0:
            logger.warning(
                "%d leases expired before they were renewed; their events were handed to "
                "another worker and may be handled twice (lease is %.1fs: raise it if "
                "workers stall longer than that)", lost, self.lease,
            )

    # -- retries and dead letters ----------------------------------------

    def retry_later(self, message: bytes, delay: float) -> None:
        """Keep ``message`` in the delayed sorted set, due ``delay`` seconds from now (server clock)."""
        # 16 random characters first, so that two equal retries stay two members.
        tagged = os.urandom(8).hex().encode() + message
        try:
            self._wire.run(_RETRY_LATER, (self.keys.delayed,), (max(0, round(delay * 1000)), tagged))
        except RedisError as error:
            raise self._error("schedule a retry", error) from error
        # A reserve of this process blocked past the due time would see the
        # retry late: wake one, it recomputes how long to block.
        due = time.monotonic() + delay
        with self._lock:
            self._retries += 1
            late = [cid for cid, until in self._blocked.items() if until > due]
            on_time = len(late) < len(self._blocked)
        if late and not on_time:
            self._unblock(late[:1])

    # -- stats and lifecycle ---------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts of queued, reserved, delayed and dead messages, in one consistent snapshot."""
        keys = self.keys
        try:
            queued, reserved, delayed, dead = self._wire.run(
                _STATS, (keys.queue, keys.taking, keys.leases, keys.delayed, keys.dead))
        except RedisError as error:
            raise self._error("count events", error) from error
        return {"queued": int(queued), "reserved": int(reserved),
                "delayed": int(delayed), "dead": int(dead)}

    def close(self) -> None:
        """Wake blocked reserves and close the connections (a client given is left open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.interrupt()
        if self._owns_client:
            self._client.close()

    def _error(self, doing: str, error: RedisError) -> StorageError:
        """Our error for a redis-py one: what we were doing, where, what to do; no credentials."""
        detail = mask_url(str(error)) or type(error).__name__
        if isinstance(error, AuthenticationError):
            return StorageError(
                f"could not {doing}: Redis at {self.url} refused the credentials ({detail}); "
                "check the user and password in the URL")
        if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            return StorageUnavailable(
                f"could not {doing}: Redis at {self.url} is unreachable ({detail}). Check that "
                "redis-server runs and that the URL is right; try again once it is back")
        if "unknown command" in detail.lower():
            detail += " (the redis storage needs Redis 6.2 or later)"
        return StorageError(f"could not {doing}: Redis at {self.url} answered: {detail}")

    def __repr__(self) -> str:
        return f"RedisStorage({self.url!r}, namespace={self.keys.namespace!r}, lease={self.lease})"
