"""The Lua scripts of a subscription's queue: leasing, acknowledging, retries, dead letters.

Redis runs a script alone: no other command sees it half done, so a message
is never in two places (or none) at once. Every time a script compares or
sets a deadline comes from ``TIME``, the server's clock, because workers on
several machines disagree about the time. Each script names every key it
touches in ``KEYS`` (see :mod:`._lua` on Redis Cluster). The scripts move
bytes; none decodes a message. Routing and subscriptions are in
:mod:`._routing_scripts`.

Each is the text of ``lua/<its name in lower case>.lua``, which says its
KEYS, ARGV and reply (see :mod:`._lua` on how the files are put together).
"""

from __future__ import annotations

from ._lua import RETRY_TAG_WIDTH, TAKE_MORE_QUEUED, TAKE_NOTHING_DUE, source

__all__ = [
    "ACK", "DEAD_LETTER", "DEAD_LETTERS", "PURGE_ALL", "PURGE_IDS", "RELEASE", "RENEW", "REPLAY",
    "RETRY_LATER", "RETRY_TAG_WIDTH", "TAKE", "TAKE_MORE_QUEUED", "TAKE_NOTHING_DUE",
]

#: Move due retries and expired leases back to their queues, then lease
#: messages from the hosted subscriptions. Its reply starts with a status:
#: TAKE_MORE_QUEUED, TAKE_NOTHING_DUE, or the ms until something falls due.
TAKE = source("take")
#: Forget acknowledged deliveries.
ACK = source("ack")
#: Give deliveries back to the front of their queues if their lease still holds.
RELEASE = source("release")
#: Push back the deadlines of leases that still hold.
RENEW = source("renew")
#: Replace a delivery by a delayed retry (a RETRY_TAG_WIDTH tag + the message).
RETRY_LATER = source("retry_later")
#: Replace a delivery by a dead letter.
DEAD_LETTER = source("dead_letter")
#: A page of dead letters, oldest first.
DEAD_LETTERS = source("dead_letters")
#: Queue replacements in place of their dead letters.
REPLAY = source("replay")
#: Delete the named dead letters.
PURGE_IDS = source("purge_ids")
#: Delete every dead letter.
PURGE_ALL = source("purge_all")
