"""The storage's Lua scripts: where they live, how they are put together, what they share with Python.

Each script is a file of the package folder ``lua/`` (``lua/take.lua``,
``lua/route.lua``, ...), read once, at import, with :mod:`importlib.resources`
(so it is found in a wheel or a zip as in a checkout), and run with EVALSHA
(:class:`._wire.Script`). Two conventions, resolved as a script is read,
keep each file readable as a whole:

* ``--#include name.lua``, on a line of its own, stands for the fragment
  ``lua/include/name.lua``: a function or a check several scripts share,
  written once. A fragment includes what it needs the same way; each is
  included once per script, where it is first asked for.
* ``{{NAME}}`` stands for the constant ``NAME`` of :data:`CONSTANTS`: a value
  that Python reads or writes too (TAKE's status codes, the width of a
  retry's tag, ...) is defined once, here. A name that is not there fails
  the import.

**Cluster safety.** Every script names every key it touches in ``KEYS``,
and every key of a namespace has the namespace's hash tag, so they all live
in one slot and the scripts also run on Redis Cluster. A script never
computes a key from a subscription's name: the client does (it keeps the
table of subscriptions, with the version it read it at), and scripts that
depend on the table check that version first (``include/check_version.lua``).
When it changed, they do nothing and answer ``{"stale", version, name,
patterns, ...}``: the client takes the new table and calls again.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

from ._routing import STALE

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "CONSTANTS", "NO_TABLE", "PLACEHOLDER", "RETRY_TAG_WIDTH", "TAKE_MORE_QUEUED",
    "TAKE_NOTHING_DUE", "WAKE_CAP", "folder", "source",
]

#: A push leaves a wake-up token for blocked workers only while the queue
#: holds at most this many messages: enough to wake every thread that
#: waits; a longer queue means busy workers, who take again without blocking.
WAKE_CAP = 64

#: TAKE's status (the first element of its reply) when messages are left in
#: a hosted queue: the caller takes again without blocking. Any status but
#: the two is the ms until the next retry or lease falls due (0 or more).
TAKE_MORE_QUEUED = -2
#: TAKE's status when no retry or lease is pending: block until woken.
TAKE_NOTHING_DUE = -1

#: A retry waits in a delayed set as a member: this many random hex
#: characters, then the message, so that two equal retries stay two members.
#: It is part of what Redis stores (0.1 wrote the same width, and delayed
#: sets keep members across an upgrade): never change it.
RETRY_TAG_WIDTH = 16

#: The version SUBSCRIBE is called with when the client sends no table.
NO_TABLE = "none"

#: What ``{{NAME}}`` in a script stands for.
CONSTANTS: Mapping[str, int | str] = {
    "NO_TABLE": NO_TABLE,
    "RETRY_TAG_WIDTH": RETRY_TAG_WIDTH,
    "STALE": STALE.decode(),
    "TAKE_MORE_QUEUED": TAKE_MORE_QUEUED,
    "TAKE_NOTHING_DUE": TAKE_NOTHING_DUE,
    "WAKE_CAP": WAKE_CAP,
}

#: A constant's place in a script. (Lua's own ``{{}, {}}`` never looks like one.)
PLACEHOLDER = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
_INCLUDE = re.compile(r"^[ \t]*--#include[ \t]+(\S+)[ \t]*(?:\n|\Z)", re.MULTILINE)


def folder() -> Traversable:
    """The package folder of the scripts, ``lua/`` (its fragments in ``lua/include/``)."""
    return resources.files(__name__.rpartition(".")[0]) / "lua"


def source(name: str) -> str:
    """The text of the script ``lua/<name>.lua``: its fragments included, its constants filled in."""
    text = _included((folder() / f"{name}.lua").read_text(encoding="utf-8"), set())

    def constant(match: re.Match[str]) -> str:
        if match[1] not in CONSTANTS:
            raise LookupError(f"lua/{name}.lua: {match[0]} is none of the constants {sorted(CONSTANTS)}")
        return str(CONSTANTS[match[1]])

    return PLACEHOLDER.sub(constant, text)


def _included(text: str, done: set[str]) -> str:
    """``text`` with each ``--#include`` replaced by its fragment (each once: ``done``)."""

    def fragment(match: re.Match[str]) -> str:
        name = match[1]
        if name in done:
            return ""
        done.add(name)
        return _included((folder() / "include" / name).read_text(encoding="utf-8"), done)

    return _INCLUDE.sub(fragment, text)
