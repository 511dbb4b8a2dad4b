"""The client's copy of the table of subscriptions.

The table lives in Redis (``{ns}:subscriptions``, with a version counter).
Each storage keeps the copy it last read, and names from it the keys of
every subscription that a script needs: scripts never compute a key (Redis
Cluster). A script that depends on the table checks the version the client
read; when it changed (a subscription was created, changed or removed), it
does nothing and sends the new table, and the client calls again.
"""

from __future__ import annotations

from collections.abc import Sequence

from rocketman_core.plugin import pattern_regex

from ._layout import KeyLayout, SubscriptionKeys

__all__ = ["STALE", "UNKNOWN", "Table"]

#: The first element of a script's answer when the client's table is out of date.
STALE = b"stale"
#: The version of a table never read: every versioned script answers STALE to it.
UNKNOWN = "-"


class Table:
    """The subscriptions at one version: their names, patterns and keys."""

    def __init__(self, keys: KeyLayout, version: str = UNKNOWN,
                 patterns: dict[str, tuple[str, ...]] | None = None) -> None:
        self.layout = keys
        self.version = version
        self.patterns = dict(patterns or {})
        #: The names, sorted: the order of every per-subscription list of keys.
        self.names: tuple[str, ...] = tuple(sorted(self.patterns))
        self.keys: dict[str, SubscriptionKeys] = {n: keys.subscription(n) for n in self.names}
        self._targets: dict[str, tuple[str, ...]] = {}

    def targets(self, event: str) -> tuple[str, ...]:
        """``queue, wake`` of each subscription whose patterns match ``event``, in the table's order.

        The same match as the scripts' ``matches.lua``: ``*`` stands for any
        characters, every other character for itself.
        """
        found = self._targets.get(event)
        if found is None:
            found = tuple(key for name in self.names if _matches(event, self.patterns[name])
                          for key in (self.keys[name].queue, self.keys[name].wake))
            if len(self._targets) >= 10_000:
                self._targets.clear()
            self._targets[event] = found
        return found

    @classmethod
    def from_reply(cls, keys: KeyLayout, reply: Sequence[bytes]) -> Table:
        """The table a script sent with its STALE answer: ``[STALE, version, name, patterns, ...]``."""
        version = reply[1].decode()
        flat = reply[2:]
        patterns = {
            flat[i].decode(): tuple(flat[i + 1].decode().split())
            for i in range(0, len(flat), 2)
        }
        return cls(keys, version, patterns)


def _matches(event: str, patterns: tuple[str, ...]) -> bool:
    # A pattern without '*' is compared, not compiled: a table of thousands
    # of exact subscriptions would otherwise churn through re's cache.
    return any(event == pattern if "*" not in pattern else pattern_regex(pattern).match(event)
               for pattern in patterns)
