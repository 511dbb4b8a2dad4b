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
