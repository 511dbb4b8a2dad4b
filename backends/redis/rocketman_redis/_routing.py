"""The client's copy of the table of subscriptions, and routing by event name.

The table lives in Redis (``{ns}:subscriptions``, with a version counter).
Each storage keeps the copy it last read, and computes from it which
subscriptions an event goes to, and so which keys the PUSH script touches:
scripts never compute a key (Redis Cluster), and an emit stays one round
trip. The script checks the version the client routed with; when it
changed (a subscription was created, changed or removed), it does nothing
and sends the new table, and the client routes again. So an event goes to
the subscriptions that exist at the instant Redis stores it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._layout import KeyLayout, SubscriptionKeys

__all__ = ["STALE", "UNKNOWN", "Table"]

#: The first element of a script's answer when the client's table is out of date.
STALE = b"stale"
#: The version of a table never read: every versioned script answers STALE to it.
UNKNOWN = "-"

_ROUTE_CACHE_LIMIT = 10_000


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")


class Table:
    """The subscriptions at one version: names, patterns, keys, and the routes computed so far."""

    def __init__(self, keys: KeyLayout, version: str = UNKNOWN,
                 patterns: dict[str, tuple[str, ...]] | None = None) -> None:
        self.layout = keys
        self.version = version
        self.patterns = dict(patterns or {})
        #: The names, sorted: the order of every per-subscription list of keys.
        self.names: tuple[str, ...] = tuple(sorted(self.patterns))
        self.keys: dict[str, SubscriptionKeys] = {n: keys.subscription(n) for n in self.names}
        self._exact: dict[str, list[str]] = {}
        self._wild: list[tuple[re.Pattern[str], str]] = []
        for name in self.names:
            for pattern in self.patterns[name]:
                if "*" in pattern:
                    self._wild.append((_regex(pattern), name))
                else:
                    self._exact.setdefault(pattern, []).append(name)
        self._targets: dict[str, tuple[str, ...]] = {}
        # event name -> the KEYS of PUSH (version, subscriptions, then queue and
        # wake of each target, or the parked log and dropped counter).
        self._push_keys: dict[str, tuple[str, ...]] = {}
        self._head = (keys.version, keys.subscriptions)
        #: The KEYS of PUSH for an event no subscription matches.
        self.parking = (*self._head, keys.parked, keys.dropped)

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

    def targets(self, event: str) -> tuple[str, ...]:
        """The names of the subscriptions the event ``event`` goes to, in table order."""
        found = self._targets.get(event)
        if found is None:
            matched = set(self._exact.get(event, ()))
            matched.update(name for regex, name in self._wild if regex.match(event))
            found = tuple(name for name in self.names if name in matched)
            if len(self._targets) >= _ROUTE_CACHE_LIMIT:
                self._targets.clear()
                self._push_keys.clear()
            self._targets[event] = found
        return found

    def push_keys(self, event: str) -> tuple[str, ...]:
        """The KEYS of the PUSH script for the event ``event`` (:attr:`parking` when none matches)."""
        found = self._push_keys.get(event)
        if found is None:
            targets = self.targets(event)
            if targets:
                found = self._head + tuple(
                    key for name in targets for key in (self.keys[name].queue, self.keys[name].wake))
            else:
                found = self.parking
            self._push_keys[event] = found
        return found
