"""The key layout of one namespace: which Redis key holds what.

Every key starts with the namespace in braces, ``{rocketman}:...``: the
braces are a Redis Cluster *hash tag*, so all the keys of a namespace live in
one slot and the multi-key Lua scripts run there too. Each subscription has
keys of its own, ``{rocketman}:sub:<name>:queue`` and so on, named by the
client (never by a script) from the table of subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout", "SubscriptionKeys"]


@dataclass(frozen=True)
class SubscriptionKeys:
    """The keys of one subscription."""

    name: str
    #: List of queued messages: pushes go left, workers take from the right (FIFO).
    queue: str
    #: List of wake-up tokens, on which workers block (BLPOP) while the queue is empty.
    wake: str
    #: Hash: lease token -> the batch of messages it covers (msgpack), and "#" -> how many are leased.
    reserved: str
    #: Sorted set: lease token -> deadline, in milliseconds of the server's clock.
    leases: str
    #: Sorted set: 16-character tag + message -> due time, in ms of the server's clock.
    delayed: str
    #: Sorted set: the ids of this subscription's dead letters.
    dead: str
    #: Sorted set: host -> when it last said it hosts this subscription (ms, server clock).
    hosts: str

    def take(self) -> tuple[str, str, str, str, str]:
        """The five keys TAKE reads for this subscription, in its order."""
        return (self.queue, self.wake, self.reserved, self.leases, self.delayed)

    def all(self) -> tuple[str, ...]:
        """Every key of this subscription."""
        return (self.queue, self.wake, self.reserved, self.leases, self.delayed, self.dead,
                self.hosts)


@dataclass(frozen=True)
class KeyLayout:
    """The names of the Redis keys of one rocketman namespace.

    :param namespace: the prefix inside the braces; the default storage uses
        ``rocketman``. It must not contain braces (they would end the hash tag).
    """

    namespace: str

    def __post_init__(self) -> None:
        if not isinstance(self.namespace, str) or not self.namespace:
            raise ValueError(f"redis storage: namespace must be a non-empty string, not {self.namespace!r}")
        if "{" in self.namespace or "}" in self.namespace or any(c.isspace() for c in self.namespace):
            raise ValueError(
                f"redis storage: namespace {self.namespace!r} must not contain braces or "
                "whitespace (the namespace is the Redis Cluster hash tag of every key)"
            )

    def _key(self, suffix: str) -> str:
        return f"{{{self.namespace}}}:{suffix}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the namespace (braces escaped)."""
        return f"\\{{{self.namespace}\\}}:*"

    # -- subscriptions ---------------------------------------------------

    @property
    def subscriptions(self) -> str:
        """Hash: subscription name -> its patterns, separated by spaces."""
        return self._key("subscriptions")

    @property
    def created(self) -> str:
        """Hash: subscription name -> when it was created, ms of the server's clock."""
        return self._key("subscriptions:created")

    @property
    def seen(self) -> str:
        """Hash: subscription name -> when a process last hosted it, ms of the server's clock."""
        return self._key("subscriptions:seen")

    @property
    def parked_marks(self) -> str:
        """Hash: subscription name -> the newest parked event it had the chance to copy.

        It outlives a removed subscription: registered again under the same
        name, it copies only what was parked since, not again what it had.
        """
        return self._key("subscriptions:parked-mark")

    @property
    def version(self) -> str:
        """Counter, incremented by every change of the subscriptions hash."""
        return self._key("subscriptions:version")

    def subscription(self, name: str) -> SubscriptionKeys:
        """The keys of the subscription ``name``."""
        prefix = self._key(f"sub:{name}:")
        return SubscriptionKeys(
            name, prefix + "queue", prefix + "wake", prefix + "reserved", prefix + "leases",
            prefix + "delayed", prefix + "dead", prefix + "hosts",
        )

    @property
    def parked(self) -> str:
        """Stream of events no subscription matched: fields ``n`` (name) and ``m`` (message)."""
        return self._key("parked")

    @property
    def dropped(self) -> str:
        """Counter of events no subscription received (parked, then evicted)."""
        return self._key("dropped")

    # -- dead letters ----------------------------------------------------

    @property
    def dead(self) -> str:
        """Sorted set: dead letter id -> the same id as a number (the order they came in)."""
        return self._key("dead")

    @property
    def dead_messages(self) -> str:
        """Hash: dead letter id -> the message, exactly."""
        return self._key("dead:message")

    @property
    def dead_reasons(self) -> str:
        """Hash: dead letter id -> the reason, UTF-8 text."""
        return self._key("dead:reason")

    @property
    def dead_times(self) -> str:
        """Hash: dead letter id -> when, ``seconds.microseconds`` of the server's clock."""
        return self._key("dead:time")

    @property
    def dead_subscriptions(self) -> str:
        """Hash: dead letter id -> the subscription it was for (absent for 0.1 letters)."""
        return self._key("dead:subscription")

    @property
    def dead_sequence(self) -> str:
        """Counter the dead letter ids come from."""
        return self._key("dead:seq")

    # -- the inbox, and the 0.1 layout, routed by MIGRATE ----------------

    @property
    def queue(self) -> str:
        """The inbox: producers in other languages (and rocketman 0.1) LPUSH envelopes here.

        A process hosting subscriptions routes each by its ``name`` as it comes.
        """
        return self._key("queue")

    @property
    def taking(self) -> str:
        """Where the inbox router moves a message (BLMOVE) until MIGRATE routes it."""
        return self._key("taking")

    @property
    def reserved(self) -> str:
        """0.1: lease token -> reserved message."""
        return self._key("reserved")

    @property
    def leases(self) -> str:
        """0.1: lease token -> deadline."""
        return self._key("leases")

    @property
    def delayed(self) -> str:
        """0.1: tag + message -> due time."""
        return self._key("delayed")

    def legacy(self) -> tuple[str, str, str, str, str]:
        """The 0.1 keys that may hold messages: queue, taking, reserved, leases, delayed."""
        return (self.queue, self.taking, self.reserved, self.leases, self.delayed)

    def dead_keys(self) -> tuple[str, str, str, str, str]:
        """The dead letters' index and hashes: dead, messages, reasons, times, subscriptions."""
        return (self.dead, self.dead_messages, self.dead_reasons, self.dead_times,
                self.dead_subscriptions)

    def shared(self) -> tuple[str, ...]:
        """Every key of the namespace that is not a subscription's."""
        return (
            self.subscriptions, self.created, self.seen, self.parked_marks, self.version,
            self.parked, self.dropped,
            *self.dead_keys(), self.dead_sequence, *self.legacy(),
        )
