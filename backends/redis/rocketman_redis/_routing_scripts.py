"""The Lua scripts that route events into subscriptions, and keep the table of subscriptions.

An emit is one PUSH: by the client's copy of the table of subscriptions, it
puts the envelope straight into the queue of each subscription it matches
(with a wake-up token), in the one round trip an LPUSH would take. When that
copy is out of date, when older events wait in the inbox (order), or when
no subscription matches, the event goes onto the inbox ``{ns}:queue``
instead, as an element ``"\\0" + name + "\\n" + envelope``: the name beside
the bytes, so that no JSON is parsed to route it (a producer in another
language pushes the envelope alone; its name is then read with cjson).
``emit_many`` pushes onto the inbox: one LPUSH per thousand events. Routers
(a thread in each process that hosts subscriptions, and a producer whose
inbox grows) move the inbox's elements into the queue of every subscription
whose patterns match, or into the parked log, in batches, with ROUTE.

**Routing is as of the emit.** Every script that changes the table of
subscriptions (SUBSCRIBE) first routes what waits in the inbox with the
table as it was, in the same atomic step; so an event always reaches the
subscriptions that existed when it was pushed, however late it is routed.
COUNTS routes first too, so that counts are of routed events.

Every routing script takes the same first :data:`ROUTING_KEYS` keys and
five arguments, then the queue and wake keys of each subscription of the
table, then its own:

* KEYS: version, subscriptions, parked, dropped, the inbox, taking, the
  0.1 reserved, leases and delayed keys, dead, dead messages, dead
  reasons, dead times, dead sequence; then ``queue, wake`` per subscription.
* ARGV: version, how many to route (0: all), park_limit, park_max_age_ms,
  n (the number of subscriptions), their n names, then their n patterns
  (space-separated; the version check makes them the table's).

A call that routes one event costs a handful of commands; one that routes a
thousand costs about the same plus a few microseconds per event: routers
take what waits in batches.

Each script is the text of ``lua/<its name in lower case>.lua``, which says
its KEYS, ARGV and reply; what they all share is ``lua/include/routing.lua``
(see :mod:`._lua` on how the files are put together).
"""

from __future__ import annotations

from ._lua import NO_TABLE, source

__all__ = [
    "COUNTS", "KEEP_ALIVE", "LEAVE", "NO_TABLE", "PUSH", "ROUTE", "ROUTING_KEYS", "SUBSCRIBE", "UNSUBSCRIBE",
]

#: How many fixed keys every routing script takes before the subscriptions'.
ROUTING_KEYS = 14

#: Route waiting events.
ROUTE = source("route")
#: Push one event into its subscriptions' queues when the client's table is
#: current and the inbox empty; else onto the inbox (not a routing script:
#: its own KEYS and ARGV, see lua/push.lua).
PUSH = source("push")
#: Route everything waiting, then register subscriptions hosted by a host
#: (called with the version NO_TABLE when the client sends no table).
SUBSCRIBE = source("subscribe")
#: Route everything waiting, then count, in one consistent snapshot.
COUNTS = source("counts")
#: Record that a host still hosts subscriptions; evict parked events past their age.
KEEP_ALIVE = source("keep_alive")
#: A host stops hosting subscriptions (a clean stop).
LEAVE = source("leave")
#: Remove one subscription with its backlog and its dead letters.
UNSUBSCRIBE = source("unsubscribe")
