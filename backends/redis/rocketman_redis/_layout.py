"""The key layout of one namespace: which Redis key holds what.

Every key starts with the namespace in braces, ``{rocketman}:queue``: the
braces are a Redis Cluster *hash tag*, so all the keys of a namespace live in
one slot and the multi-key Lua scripts run there too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout"]


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
    def queue(self) -> str:
        """List of queued messages: producers LPUSH, workers take from the right (FIFO)."""
        return self._key("queue")

    @property
    def taking(self) -> str:
        """List where a worker's BLMOVE stages a message until a script leases it."""
        return self._key("taking")

    @property
    def reserved(self) -> str:
        """Hash: lease token -> the reserved message."""
        return self._key("reserved")

    @property
    def leases(self) -> str:
        """Sorted set: lease token -> deadline, in milliseconds of the server's clock."""
        return self._key("leases")

    @property
    def delayed(self) -> str:
        """Sorted set: 16-character tag + message -> due time, in ms of the server's clock."""
        return self._key("delayed")

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
    def dead_sequence(self) -> str:
        """Counter the dead letter ids come from."""
        return self._key("dead:seq")

    def all(self) -> tuple[str, ...]:
        """Every key of the namespace (to delete a namespace, or to check the layout)."""
        return (
            self.queue, self.taking, self.reserved, self.leases, self.delayed, self.dead,
            self.dead_messages, self.dead_reasons, self.dead_times, self.dead_sequence,
        )
