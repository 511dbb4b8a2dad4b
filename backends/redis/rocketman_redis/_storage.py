"""The Redis storage: a list per subscription, leases in a hash and a sorted set, Lua for the rest.

How a message moves (keys of :class:`~rocketman_redis.KeyLayout`):

* ``push``: one PUSH script call that puts the event into the queue of
  every subscription it matches by the storage's copy of the table, and
  leaves a wake-up token for a blocked worker; when that copy is out of
  date, older events wait in the inbox, or none matches, the event goes
  onto the inbox ``{ns}:queue`` instead, with its name beside the bytes
  (``push_many``: always the inbox, one LPUSH per thousand; ``push_async``:
  the same on redis.asyncio, a client per event loop, see
  :mod:`._async_push`). A router (a thread of each process that hosts
  subscriptions) moves what arrives in the inbox into the queue of every
  subscription the event matches, or into the parked log, and leaves
  wake-up tokens, in batches, with one script call (see
  :mod:`._routing_scripts`: an event reaches the subscriptions that existed
  when it was pushed, however late it is routed).
* ``reserve``: the TAKE script leases what is ready in the hosted
  subscriptions' queues, in one round trip; when nothing is, the worker
  blocks in ``BLPOP`` on their wake-up lists (no polling), with TAKE sent
  behind it: Redis runs it as soon as the BLPOP ends, in the same round
  trip. A token lost with a killed worker costs latency, never data: the
  message is still in its queue.
* a lease covers the batch one TAKE took from a queue: a token in the
  subscription's ``reserved`` hash (token -> the batch's messages) and
  ``leases`` sorted set (token -> deadline on the server's clock), so its
  cost is per batch, not per message. ``ack`` of the whole batch deletes
  both, ``renew`` pushes the deadline back, ``retry_later``,
  ``dead_letter``, ``release`` and a partial ``ack`` take their messages
  out of it in one script each, and TAKE puts what an expired lease still
  holds back in its queue (see ``lua/include/batch.lua``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import AuthenticationError, NoPermissionError, NoScriptError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rocketman_core import mask_url

from . import _routing_scripts, _scripts
from ._dead_letters import DeadLetters
from ._errors import StorageError, StorageUnavailable
from ._layout import SubscriptionKeys
from ._options import connect
from ._routing import STALE, UNKNOWN, Table
from ._subscriptions import Subscriptions
from ._wire import MAX_BATCH, Script, Wire

if TYPE_CHECKING:
    from ._async_push import AsyncPushes

__all__ = ["RedisStorage"]

logger = logging.getLogger("rocketman.redis")

# Never ask BLPOP for less: a timeout of 0 would block forever.
_MIN_BLOCK = 0.002
# How long a thread trusts that its last TAKE left the queues empty.
_HINT_FRESH = 0.5
_NEVER = float("inf")
# While the queues stay busy, TAKE looks for due retries and expired leases this often.
_SCAN_EVERY = 0.05
# Log evictions from the parked log at most this often.
_EVICTION_LOG_INTERVAL = 60.0
# A producer routes what waits in the inbox itself once it is this long (no
# router keeps up, or none runs): the inbox stays bounded, parking applies.
_INBOX_ROUTE_AT = 10_000
# ... at most this often.
_INBOX_ROUTE_EVERY = 0.05

_TAKE = Script(_scripts.TAKE)
_PUSH = Script(_routing_scripts.PUSH)
_ACK = Script(_scripts.ACK)
_RELEASE = Script(_scripts.RELEASE)
_RENEW = Script(_scripts.RENEW)
_RETRY_LATER = Script(_scripts.RETRY_LATER)
_COUNTS = Script(_routing_scripts.COUNTS)


class _Lease:
    """The lease of one batch: its token, and which of its messages (1-based) are not settled yet.

    Its lock is held while a settlement runs, from choosing what it takes to
    the script's answer: a worker acknowledging its batch and a stop giving
    the same batch back never both claim a message, and the last one to
    settle is the one that forgets the batch.
    """

    __slots__ = ("keys", "left", "lock", "token")

    def __init__(self, token: str, keys: SubscriptionKeys, size: int) -> None:
        self.token = token
        self.keys = keys
        self.left = set(range(1, size + 1))
        self.lock = threading.Lock()


class _Delivery:
    """A reserved message, its subscription, and its place in the batch its lease covers."""

    __slots__ = ("acked", "index", "keys", "lease", "message", "subscription")

    def __init__(self, message: bytes, lease: _Lease, index: int) -> None:
        self.message = message
        self.lease = lease
        self.index = index
        self.keys = lease.keys
        self.subscription = lease.keys.name
        self.acked = False

    @property
    def token(self) -> str:
        """The token of the lease covering this delivery (and the rest of its batch)."""
        return self.lease.token

    def __repr__(self) -> str:
        return (f"<redis delivery {self.token} #{self.index} for {self.subscription} "
                f"({len(self.message)} bytes)>")


def _by_lease(deliveries: Sequence[Any]) -> dict[_Lease, list[Any]]:
    """Deliveries by the lease that covers them, each group in the order given."""
    groups: dict[_Lease, list[Any]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery.lease, []).append(delivery)
    return groups


class _ReserveHint(threading.local):
    """What a thread's last TAKE said: when, and when something falls due (None: queues not empty)."""

    took_at = float("-inf")
    wake_at: float | None = None
    retries = 0  # the storage's count of retry_later calls then: a new retry may fall due sooner
    hosted: tuple[str, ...] = ()


def _unclaim(claims: Sequence[tuple[_Lease, list[int], bool]]) -> None:
    """Give back claims whose script failed: they are still to settle."""
    for lease, indices, _ in claims:
        lease.left.update(indices)


def _indices(lease: _Lease, indices: list[int], whole: bool) -> tuple[str, str, str]:
    """A batch's arguments to the settling scripts: its token, the indices, whether they are all it has left."""
    return lease.token, ",".join(map(str, indices)), "1" if whole else "0"


_instances: weakref.WeakSet[RedisStorage] = weakref.WeakSet()


def _after_fork() -> None:
    for storage in list(_instances):
        storage._forget_threads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class RedisStorage(Subscriptions, DeadLetters):
    """Durable subscriptions in Redis, shared by every process that uses the same URL and namespace.

    At least once: a message routed to a subscription is delivered until a
    worker acknowledges it; a worker that dies (even SIGKILL) loses nothing,
    because what it held goes back to its queue when its lease expires.
    Thread-safe.

    :param url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://``
        for TLS, or ``unix:///path/to/redis.sock[?db=N]``. Default: the
        ``ROCKETMAN_REDIS_URL`` environment variable, else
        ``redis://localhost:6379/0``. The query string may carry the options
        below, and redis-py's own (``ssl_cert_reqs=none``...).
    :param client: an existing ``redis.Redis`` (instead of ``url``); it must
        not decode responses. The storage does not close it.
    :param namespace: the prefix of every key, ``{namespace}:...``
        (default ``rocketman``). Applications sharing a Redis use their own.
    :param lease: seconds a reserved message may stay unacknowledged before
        it goes back to the queue for another worker (default 30). Workers
        renew the leases of the messages they hold every ``lease / 3``
        seconds, so only a dead or stalled worker loses its lease.
    :param connect_timeout: seconds to wait for a connection (default 2).
    :param socket_timeout: seconds to wait for an answer (default 5); a
        blocking reserve waits this much longer than it asked Redis to block.
    :param park_limit: the most events kept in the parked log, for
        subscriptions created later (default 100,000; 0 parks nothing). The
        oldest are evicted first, and counted in ``stats()["dropped"]``.
    :param park_max_age: seconds a parked event is kept (default 7 days; 0:
        no age limit).

    ``push`` (and ``push_async``) on an unreachable Redis raises
    :class:`StorageUnavailable` after at most about
    ``2 * (connect_timeout + socket_timeout)``, never hangs.
    """

    #: The version of rocketman's Storage contract this storage implements.
    contract_version = 2
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
        park_limit: int | str | None = None,
        park_max_age: float | str | None = None,
    ) -> None:
        connection = connect(url, client, {
            "namespace": namespace, "lease": lease,
            "connect_timeout": connect_timeout, "socket_timeout": socket_timeout,
            "park_limit": park_limit, "park_max_age": park_max_age,
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
        #: The most events the parked log keeps, and for how many seconds (0: no limit).
        self.park_limit = connection.park_limit
        self.park_max_age = connection.park_max_age
        self._park_args = (str(self.park_limit), str(round(self.park_max_age * 1000)))
        self._lease_ms = max(1, round(self.lease * 1000))
        self._wire = Wire(self._client)
        self._table = Table(self.keys)
        # Whether push may route as it pushes (False: the ACL refuses this user the scripts).
        self._direct = True
        self._hosted_cache: dict[tuple[str, ...], tuple[list[SubscriptionKeys], list[str], list[str]]] = {}
        self._local = _ReserveHint()
        # Lease tokens and retry tags: unique across processes without a
        # round trip (64 random bits per storage, then a counter).
        self._tag = os.urandom(8).hex()
        self._counter = itertools.count(1)
        self._rotation = itertools.count()
        self._scan_at = float("-inf")
        self._lock = threading.Lock()
        self._interrupted = threading.Condition(self._lock)
        self._reserving = 0
        self._blocked: dict[int, float] = {}  # server client id -> when its BLPOP times out
        self._interrupts = 0
        self._retries = 0
        self._evicted = 0
        self._evictions_logged_at = float("-inf")
        self._frames: dict[str, bytes] = {}
        self._inbox_routed_at = float("-inf")
        self._router: threading.Thread | None = None
        self._router_client: int | None = None
        self._async: AsyncPushes | None = None  # made at the first push_async
        self._closed = False
        _instances.add(self)

    def _forget_threads(self) -> None:
        """In a forked child: the parent's threads are gone, and a lock one held stays held.

        That goes for the client's connection pool too: the wire makes a pool
        of its own at its first use in the child (see :class:`Wire`).
        """
        self._lock = threading.Lock()
        self._interrupted = threading.Condition(self._lock)
        self._reserving = 0
        self._blocked = {}
        self._router = None
        self._router_client = None
        self._local = _ReserveHint()
        # Lease tokens of its own: the parent goes on counting from the same tag.
        self._tag = os.urandom(8).hex()
        if self._async is not None:
            self._async.forget_in_child()

    # -- the table of subscriptions --------------------------------------

    def _versioned(self, script: Script, build: Callable[[Table], tuple[Sequence[str], Sequence[Any]]],
                   doing: str) -> Any:
        """Run a script that depends on the table, reading the new table when it changed."""
        for _ in range(10):
            table = self._table
            keys, args = build(table)
            try:
                reply = self._wire.run(script, keys, args)
            except RedisError as error:
                raise self._error(doing, error) from error
            if type(reply) is list and reply and reply[0] == STALE:
                self._table = Table.from_reply(self.keys, reply)
                continue
            return reply
        raise StorageError(f"could not {doing}: the subscriptions at {self.url} kept changing")

    def _read_table(self) -> Table:
        """The table of subscriptions as it is now, in one round trip.

        The version is read before the table: should a change come between
        the two, the copy is newer than its version says, and the next
        versioned script answers STALE rather than trust it.
        """
        keys = self.keys
        version, flat = self._wire.call_many([("GET", keys.version), ("HGETALL", keys.subscriptions)])
        pairs = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
        return Table(keys, version.decode() if version is not None else "0",
                     {name.decode(): tuple(patterns.decode().split()) for name, patterns in pairs})

    def _routing(self, table: Table, limit: int) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV every routing script starts with (see :mod:`._routing_scripts`)."""
        keys = self.keys
        script_keys = [keys.version, keys.subscriptions, keys.parked, keys.dropped, keys.queue,
                       keys.taking, keys.reserved, keys.leases, keys.delayed, keys.dead,
                       keys.dead_messages, keys.dead_reasons, keys.dead_times, keys.dead_sequence]
        for name in table.names:
            script_keys += (table.keys[name].queue, table.keys[name].wake)
        return script_keys, [table.version, limit, *self._park_args, len(table.names), *table.names,
                             *(" ".join(table.patterns[name]) for name in table.names)]

    # -- pushing ---------------------------------------------------------

    def _frame(self, name: str) -> bytes:
        """What goes before the bytes of an event named ``name`` in the inbox: NUL, name, newline."""
        frame = self._frames.get(name)
        if frame is None:
            frame = b"\0" + name.encode() + b"\n"
            if len(self._frames) < 10_000:
                self._frames[name] = frame
        return frame

    def push(self, name: str, message: bytes) -> None:
        """Store one event in one round trip: into its subscriptions' queues, else onto the inbox.

        By this storage's copy of the table of subscriptions, PUSH puts the
        event straight into the queue of every subscription it matches (a
        worker blocked on one wakes at once: no router in between), unless
        the table changed or older events still wait in the inbox; then it
        goes onto the inbox, as does an event no subscription matches (the
        router parks it), with a plain LPUSH.
        """
        keys = self.keys
        try:
            length = self._push_routed(name, message) if self._direct else None
            if length is None:
                frame = self._frames.get(name) or self._frame(name)
                length = self._wire.call("LPUSH", keys.queue, frame + message)
        except RedisError as error:
            raise self._error("store an event", error) from error
        if type(length) is list:
            self._table = Table.from_reply(keys, length)  # it went to the inbox
        elif length >= _INBOX_ROUTE_AT:
            self._route_backlog()

    def _push_routed(self, name: str, message: bytes) -> Any:
        """PUSH's answer; None when the event is for the inbox (none matches, or scripts are refused)."""
        try:
            if self._table.version == UNKNOWN:
                self._table = self._read_table()
            call = self._push_call(name, message)
            return None if call is None else self._wire.run(_PUSH, *call)
        except NoPermissionError as error:
            self._inbox_only(error)
            return None

    def _push_call(self, name: str, message: bytes) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
        """PUSH's KEYS and ARGV for the event by the table, or None when no subscription matches."""
        keys, table = self.keys, self._table
        targets = table.targets(name)
        if not targets:
            return None
        return ((keys.version, keys.subscriptions, keys.queue, keys.taking, *targets),
                (table.version, name, message))

    def _inbox_only(self, error: RedisError) -> None:
        """The server's ACL refuses this user PUSH (or reading the table): push onto the inbox from now on."""
        self._direct = False
        logger.warning(
            "Redis at %s refuses this user the scripts that route an emit as it is pushed (%s): "
            "emits go onto the inbox, and a worker's router routes them (one hop more). "
            "Allow EVALSHA, SCRIPT, GET and HGETALL on the namespace's keys to route at push.",
            mask_url(self.url), error)

    def push_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        """LPUSH the events in order, a thousand per command, pipelined in one round trip."""
        if not events:
            return
        frame = self._frame
        elements = [(self._frames.get(name) or frame(name)) + message for name, message in events]
        queue = self.keys.queue
        try:
            if len(elements) <= MAX_BATCH:
                lengths = [self._wire.call("LPUSH", queue, *elements)]
            else:
                lengths = self._wire.call_many([
                    ("LPUSH", queue, *elements[start:start + MAX_BATCH])
                    for start in range(0, len(elements), MAX_BATCH)
                ])
        except RedisError as error:
            raise self._error(f"store {len(events)} events", error) from error
        if max(lengths) >= _INBOX_ROUTE_AT:
            self._route_backlog()

    def _route_backlog(self) -> None:
        """The inbox grew long (no router keeps up, or none runs): route some of it from here."""
        if self._backlog_turn():
            self._route(limit=5 * MAX_BATCH)

    def _backlog_turn(self) -> bool:
        """Whether this producer routes the long inbox now: at most once per ``_INBOX_ROUTE_EVERY``."""
        now = time.monotonic()
        if now - self._inbox_routed_at < _INBOX_ROUTE_EVERY:
            return False
        self._inbox_routed_at = now
        return True

    # -- pushing from a coroutine ------------------------------------------

    def _async_pushes(self) -> AsyncPushes:
        """The clients of push_async, made at its first call (redis.asyncio is imported only then)."""
        from ._async_push import AsyncPushes

        with self._lock:
            if self._async is None:
                self._async = AsyncPushes(self._client.connection_pool, self.keys.queue)
            return self._async

    async def push_async(self, name: str, message: bytes) -> None:
        """:meth:`push` for a coroutine: the same PUSH or LPUSH, on redis.asyncio; the loop never blocks."""
        keys = self.keys
        pushes = self._async or self._async_pushes()
        try:
            length = await self._push_routed_async(pushes, name, message) if self._direct else None
            if length is None:
                length = await pushes.lpush(((self._frames.get(name) or self._frame(name)) + message,))
        except RedisError as error:
            raise self._error("store an event", error) from error
        if type(length) is list:
            self._table = Table.from_reply(keys, length)  # it went to the inbox
        elif length >= _INBOX_ROUTE_AT:
            await self._route_backlog_async()

    async def _push_routed_async(self, pushes: AsyncPushes, name: str, message: bytes) -> Any:
        """:meth:`_push_routed` on redis.asyncio (the table, read once, on a thread)."""
        try:
            if self._table.version == UNKNOWN:
                import asyncio

                self._table = await asyncio.to_thread(self._read_table)
            call = self._push_call(name, message)
            if call is None:
                return None
            script_keys, args = call
            command = ("EVALSHA", _PUSH.sha, len(script_keys), *script_keys, *args)
            try:
                return await pushes.call(*command)
            except NoScriptError:  # a new or restarted server
                await pushes.call("SCRIPT", "LOAD", _PUSH.source)
                return await pushes.call(*command)
        except NoPermissionError as error:
            self._inbox_only(error)
            return None

    async def push_many_async(self, events: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`push_many` for a coroutine: the events in order, one round trip, the loop never blocked."""
        if not events:
            return
        frame = self._frame
        elements = [(self._frames.get(name) or frame(name)) + message for name, message in events]
        try:
            lengths = await (self._async or self._async_pushes()).lpush_many(elements)
        except RedisError as error:
            raise self._error(f"store {len(events)} events", error) from error
        if max(lengths) >= _INBOX_ROUTE_AT:
            await self._route_backlog_async()

    async def _route_backlog_async(self) -> None:
        """:meth:`_route_backlog` for a coroutine: the script runs in a thread, the loop goes on."""
        if self._backlog_turn():
            import asyncio

            await asyncio.to_thread(self._route, 5 * MAX_BATCH)

    def _count_evictions(self, evicted: int) -> None:
        with self._lock:
            self._evicted += int(evicted)
            now = time.monotonic()
            if now - self._evictions_logged_at < _EVICTION_LOG_INTERVAL:
                return
            self._evictions_logged_at, count, self._evicted = now, self._evicted, 0
        logger.warning(
            "%d parked event%s evicted from %s: no subscription matched them, and the parked "
            "log keeps at most %d events for %s. Start the workers whose consumers want them, or "
            "raise park_limit / park_max_age (counted in stats()['dropped'])",
            count, " was" if count == 1 else "s were", self.url, self.park_limit,
            f"{self.park_max_age / 86400:g} days" if self.park_max_age else "ever",
        )

    # -- reserving -------------------------------------------------------

    def reserve(self, subscriptions: Sequence[str], timeout: float, max_count: int = 1) -> list[Any]:
        """Lease up to ``max_count`` ready messages of ``subscriptions``, blocking up to ``timeout``.

        One round trip when messages are ready. Otherwise the thread blocks
        in BLPOP on the subscriptions' wake-up lists, woken by a push, by the
        next retry or lease falling due, or by :meth:`interrupt`; it never
        polls.
        """
        return self._reserve(subscriptions, timeout, max_count, ())

    def ack_and_reserve(self, done: Sequence[Any], subscriptions: Sequence[str], timeout: float,
                        max_count: int = 1) -> list[Any]:
        """:meth:`ack` ``done``, then :meth:`reserve`: the acks ride on the TAKE, one round trip for both."""
        return self._reserve(subscriptions, timeout, max_count, done)

    def _reserve(self, subscriptions: Sequence[str], timeout: float, max_count: int,
                 done: Sequence[Any]) -> list[Any]:
        names = tuple(subscriptions)
        count = max(1, min(int(max_count), MAX_BATCH))
        now = time.monotonic()
        deadline = now + timeout
        generation = self._interrupts
        if not names:
            self.ack(done)
            with self._interrupted:
                if generation == self._interrupts:
                    self._interrupted.wait(timeout)
            return []
        hosted, take_keys, wake_keys = self._hosted_keys(names)
        position = {keys.name: s for s, keys in enumerate(hosted)}
        if any(d.subscription not in position for d in done):
            self.ack(done)  # not all of the hosted subscriptions: apart
            done = ()
        local = self._local
        # When this thread's last TAKE, a moment ago, left the queues empty,
        # block at once: a TAKE now would most likely find nothing, and a
        # push since then leaves a token that ends the BLPOP at once anyway.
        wake_at: float | None = None
        if (timeout > 0 and now - local.took_at < _HINT_FRESH and local.retries == self._retries
                and local.hosted == names):
            wake_at = local.wake_at
            if done and wake_at is not None:
                self.ack(done)  # it blocks first: the acks must not wait for the block
                done = ()
        with self._lock:
            self._reserving += 1
        try:
            while True:
                block = 0.0
                if wake_at is not None:
                    now = time.monotonic()
                    if deadline <= now or generation != self._interrupts:
                        return []
                    if wake_at > now:  # (nothing is left to acknowledge: see above)
                        block = max(min(deadline, wake_at) - now, _MIN_BLOCK)
                prefix = f"{self._tag}:{next(self._counter)}:"
                with contextlib.ExitStack() as locks:
                    claims = self._claim(done, locks) if done else []
                    acks = [arg for lease, indices, whole in claims
                            for arg in (position[lease.keys.name], *_indices(lease, indices, whole))]
                    take_args = (count, self._lease_ms, prefix, self._reserving, next(self._rotation),
                                 self._scan(now, local), *acks)
                    try:
                        if block:
                            status, *taken = self._block_then_take(wake_keys, block, generation,
                                                                   take_keys, take_args)
                        else:
                            status, *taken = self._wire.run(_TAKE, take_keys, take_args)
                    except RedisError as error:
                        _unclaim(claims)
                        doing = "wait for events" if block else "take events from the queues"
                        raise self._error(doing, error) from error
                for delivery in done:
                    delivery.acked = True
                done = ()
                local.took_at = now = time.monotonic()
                local.retries = self._retries
                local.hosted = names
                # status: more are queued, nothing falls due, else ms until something does.
                wake_at = (None if status == _scripts.TAKE_MORE_QUEUED
                           else _NEVER if status == _scripts.TAKE_NOTHING_DUE else now + status / 1000)
                if wake_at is not None:
                    # A lease another worker takes while this one blocks leaves
                    # no wake-up token: look again within a lease, so that it
                    # comes back about a lease after it was taken, not at our timeout.
                    wake_at = min(wake_at, now + self.lease)
                local.wake_at = wake_at
                if taken:
                    deliveries = []
                    for i in range(0, len(taken), 2):
                        index, messages = int(taken[i]), taken[i + 1]
                        lease = _Lease(f"{prefix}{index}*", hosted[index], len(messages))
                        deliveries += [_Delivery(message, lease, n)
                                       for n, message in enumerate(messages, 1)]
                    return deliveries
                if wake_at is None:
                    # Queued messages, but none for us (others took them): look again.
                    wake_at = now
                if deadline <= now or generation != self._interrupts:
                    return []
        finally:
            with self._lock:
                self._reserving -= 1

    def _scan(self, now: float, local: _ReserveHint) -> str:
        """'1' when this TAKE should look for due retries and expired leases, else '0'.

        Always when this thread's last TAKE found the queues empty (it may be
        waking for what fell due); while they stay busy, once per
        ``_SCAN_EVERY`` for the whole process: what falls due waits at most
        that long, and a busy batch costs two commands less.
        """
        if local.wake_at is not None or now >= self._scan_at or local.retries != self._retries:
            self._scan_at = now + _SCAN_EVERY
            return "1"
        return "0"

    def _hosted_keys(self, names: tuple[str, ...]) -> tuple[list[SubscriptionKeys], list[str], list[str]]:
        """The keys of the subscriptions ``names``: each one's, TAKE's and BLPOP's."""
        found = self._hosted_cache.get(names)
        if found is None:
            hosted = [self.keys.subscription(name) for name in names]
            found = (hosted, [key for keys in hosted for key in keys.take()],
                     [keys.wake for keys in hosted])
            if len(self._hosted_cache) > 100:
                self._hosted_cache.clear()
            self._hosted_cache[names] = found
        return found

    def _block_then_take(self, wake_keys: Sequence[str], seconds: float, generation: int,
                         take_keys: Sequence[str], take_args: Sequence[Any]) -> Any:
        """Block in BLPOP on the wake-up lists for up to ``seconds``, then TAKE; TAKE's reply.

        TAKE is sent behind the BLPOP, and Redis runs it the moment the BLPOP
        ends: a worker woken by a push has its lease in the same round trip
        (a round trip less between an emit and its handler at light load).
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
            return self._wire.block_pop_then_run(wake_keys, seconds, self.socket_timeout, on_blocked,
                                                 _TAKE, take_keys, take_args)
        finally:
            if blocked:
                with self._lock:
                    self._blocked.pop(blocked[0], None)

    def _unblock(self, client_ids: Sequence[int]) -> None:
        for client_id in client_ids:
            try:
                # TIMEOUT mode: the BLPOP returns nil, nothing popped.
                self._wire.call("CLIENT", "UNBLOCK", client_id)
            except RedisError as error:  # CLIENT UNBLOCK is an admin command some ACLs forbid
                logger.debug("could not interrupt a blocked reserve: %s", mask_url(str(error)))
                return

    def interrupt(self) -> None:
        """Wake every ``reserve`` of this storage blocked now; they return ``[]``."""
        with self._lock:
            self._interrupts += 1
            blocked = list(self._blocked)
            self._interrupted.notify_all()
        self._unblock(blocked)

    def _settle(self, script: Script, deliveries: Sequence[Any],
                keys: Callable[[SubscriptionKeys], tuple[str, ...]],
                args: Callable[[_Lease, list[int], bool], tuple[Any, ...]], doing: str) -> int:
        """Take ``deliveries`` out of their batches with ``script``, one call for them all; return its answer.

        Its KEYS are ``keys(...)`` of each batch's subscription, its ARGV
        ``args(lease, indices, whole)`` of each batch (see :meth:`_claim`).
        """
        with contextlib.ExitStack() as locks:
            claims = self._claim(deliveries, locks)
            if not claims:
                return 0
            script_keys = [key for lease, _, _ in claims for key in keys(lease.keys)]
            script_args = [arg for claim in claims for arg in args(*claim)]
            try:
                return int(self._wire.run(script, script_keys, script_args))
            except RedisError as error:
                _unclaim(claims)
                raise self._error(f"{doing} {len(deliveries)} events", error) from error

    @staticmethod
    def _claim(deliveries: Sequence[Any], locks: contextlib.ExitStack) -> list[tuple[_Lease, list[int], bool]]:
        """Claim the deliveries not settled yet: ``(lease, indices, whole)`` for each batch involved.

        ``whole`` says that the indices are all the batch has left. Each
        batch's lock is taken on ``locks``, to be held until the script that
        settles them answered (see :class:`_Lease`); a script that failed
        gives its claims back with :func:`_unclaim`.
        """
        groups = _by_lease(deliveries)
        # Taken in one order by every thread; the claims keep the order given.
        for lease in sorted(groups, key=id):
            locks.enter_context(lease.lock)
        claims = []
        for lease, group in groups.items():
            indices = [d.index for d in group if d.index in lease.left]
            if indices:
                lease.left.difference_update(indices)
                claims.append((lease, indices, not lease.left))
        return claims

    def ack(self, deliveries: Sequence[Any]) -> None:
        """Forget the deliveries (one round trip); a second ack, or a lost lease, changes nothing."""
        if not deliveries:
            return
        self._settle(_ACK, deliveries, lambda k: (k.reserved, k.leases), _indices, "acknowledge")
        for delivery in deliveries:
            delivery.acked = True

    def release(self, deliveries: Sequence[Any]) -> None:
        """Give unhandled deliveries back to the front of their queues now, in order."""
        if not deliveries:
            return
        self._settle(_RELEASE, deliveries, lambda k: (k.queue, k.wake, k.reserved, k.leases),
                     _indices, "give back")
        for delivery in deliveries:
            delivery.acked = True

    def renew(self, deliveries: Sequence[Any]) -> None:
        """Push the lease deadlines of held deliveries ``lease`` seconds past now (server clock)."""
        leases = [lease for lease, group in _by_lease(deliveries).items()
                  if lease.left and any(not d.acked for d in group)]
        if not leases:
            return
        groups: dict[str, list[_Lease]] = {}
        for lease in leases:
            groups.setdefault(lease.keys.name, []).append(lease)
        try:
            held = int(self._wire.run(
                _RENEW, [group[0].keys.leases for group in groups.values()],
                (self._lease_ms, *(len(group) for group in groups.values()),
                 *(lease.token for group in groups.values() for lease in group))))
        except RedisError as error:
            raise self._error(f"renew the leases of {len(deliveries)} events", error) from error
        # Those settled meanwhile were not lost, only done.
        unsettled = [lease for lease in leases if lease.left]
        if held < len(unsettled):
            logger.warning(
                "%d leases (of up to %d messages) expired before they were renewed; their events "
                "were handed to another worker and may be handled twice (lease is %.1fs: raise it "
                "if workers stall longer than that)", len(unsettled) - held,
                sum(len(lease.left) for lease in unsettled), self.lease,
            )

    # -- retries ---------------------------------------------------------

    def retry_later(self, delivery: Any, message: bytes, delay: float) -> None:
        """Replace ``delivery`` by ``message`` in its subscription's delayed set, in one step."""
        # Random characters first, so that two equal retries stay two members.
        tagged = os.urandom(_scripts.RETRY_TAG_WIDTH // 2).hex().encode() + message
        recorded = self._settle(_RETRY_LATER, [delivery], lambda k: (k.reserved, k.leases, k.delayed),
                                lambda lease, indices, whole: (
                                    *_indices(lease, indices, whole), max(0, round(delay * 1000)), tagged),
                                "schedule a retry for")
        delivery.acked = True
        if not recorded:
            logger.debug("the lease of %r was lost before its retry was recorded", delivery)
            return
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

    def _counts(self, with_hosts: bool) -> tuple[Table, list[Any], list[Any]]:
        """Route what waits, then count: the table, the totals, a row per subscription."""
        keys = self.keys
        counted: list[Table] = []

        def build(table: Table) -> tuple[list[str], list[Any]]:
            counted[:] = [table]
            script_keys, args = self._routing(table, 0)
            script_keys += (keys.created, keys.seen)
            for name in table.names:
                sub = table.keys[name]
                script_keys += (sub.reserved, sub.delayed, sub.dead, sub.hosts)
            return script_keys, [*args, "1" if with_hosts else "0"]

        totals, rows, evicted = self._versioned(_COUNTS, build, "count events")
        if evicted:
            self._count_evictions(int(evicted))
        return counted[0], totals, rows

    def stats(self) -> dict[str, int]:
        """Totals over every subscription, in one consistent snapshot (plus a 0.1 layout's leftovers)."""
        _, totals, _ = self._counts(with_hosts=False)
        return dict(zip(("queued", "reserved", "delayed", "dead", "parked", "dropped"),
                        map(int, totals), strict=True))

    def close(self) -> None:
        """Wake blocked reserves and close the connections (a client given is left open). Idempotent.

        The connections of ``push_async`` close in their event loops, soon
        (see :meth:`AsyncPushes.close <._async_push.AsyncPushes.close>`).
        """
        if self._closed:
            return
        self._closed = True
        self.interrupt()
        self._stop_router()
        if self._async is not None:
            self._async.close()
        if not self._wire.close() and self._owns_client:
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
