"""The Lua scripts of the Redis storage, where several steps must be atomic.

Redis runs a script alone: no other command sees it half done, so a message
is never in two places (or none) at once. Every time a script compares or
sets a deadline comes from ``TIME``, the server's clock, because workers on
several machines disagree about the time. Each script names all its keys in
``KEYS`` (one namespace, one hash tag), so they also run on Redis Cluster.

The scripts move bytes; none decodes a message.
"""

from __future__ import annotations

__all__ = [
    "ACK", "DEAD_LETTER", "DEAD_LETTERS", "PURGE_ALL", "PURGE_IDS", "RELEASE", "RENEW",
    "REPLAY", "RETRY_LATER", "STATS", "TAKE",
]

# Milliseconds since the epoch on the server's clock.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

#: Move due retries and expired leases back to the queue, then lease up to
#: ARGV[1] messages: first those a BLMOVE staged in ``taking`` (any worker's:
#: the list is shared, so what a worker killed right after its BLMOVE left
#: there is taken by the next one), then from the queue, at most a fair share
#: of it (ARGV[4] workers of this process want work). Returns
#: ``{status, message...}``: status -2 when messages are left in the queue,
#: else the milliseconds until the next retry or lease falls due (-1: none),
#: which bounds how long the caller may block before it calls TAKE again.
#: KEYS: queue, taking, reserved, leases, delayed.
#: ARGV: max_count, lease_ms, token_prefix, reservers.
TAKE = _NOW + """
local queue, taking, reserved, leases, delayed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- Bounded batches keep the script short; the next call moves the rest.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 256)
if #due > 0 then
  for i = 1, #due do
    -- Members are a 16-character tag (so identical retries stay distinct) + the message.
    redis.call('LPUSH', queue, string.sub(due[i], 17))
  end
  redis.call('ZREM', delayed, unpack(due))
end
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 256)
if #expired > 0 then
  local lost = redis.call('HMGET', reserved, unpack(expired))
  for i = #expired, 1, -1 do
    -- To the front of the line (the right end): it has waited long enough.
    if lost[i] then redis.call('RPUSH', queue, lost[i]) end
  end
  redis.call('HDEL', reserved, unpack(expired))
  redis.call('ZREM', leases, unpack(expired))
end
local want = tonumber(ARGV[1])
local taken = redis.call('RPOP', taking, want) or {}
if #taken < want then
  local queued = redis.call('LLEN', queue)
  if queued > 0 then
    local count = math.min(want - #taken, math.ceil(queued / tonumber(ARGV[4])))
    local more = redis.call('RPOP', queue, count) or {}
    for i = 1, #more do taken[#taken + 1] = more[i] end
  end
end
if #taken > 0 then
  local deadline = now + tonumber(ARGV[2])
  local fields, scores = {}, {}
  for i = 1, #taken do
    local token = ARGV[3] .. i
    fields[2 * i - 1] = token
    fields[2 * i] = taken[i]
    scores[2 * i - 1] = deadline
    scores[2 * i] = token
  end
  redis.call('HSET', reserved, unpack(fields))
  redis.call('ZADD', leases, unpack(scores))
end
if redis.call('LLEN', queue) > 0 then
  table.insert(taken, 1, -2)
  return taken
end
local wake = -1
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
if first[2] then wake = math.max(0, tonumber(first[2]) - now) end
first = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
if first[2] then
  local expires = math.max(0, tonumber(first[2]) - now)
  if wake < 0 or expires < wake then wake = expires end
end
table.insert(taken, 1, wake)
return taken
"""

#: Forget acknowledged deliveries. KEYS: reserved, leases. ARGV: tokens.
ACK = """
redis.call('HDEL', KEYS[1], unpack(ARGV))
return redis.call('ZREM', KEYS[2], unpack(ARGV))
"""

#: Give deliveries back to the front of the queue, in their order, if their
#: lease still holds (an expired one was already given back).
#: KEYS: queue, reserved, leases. ARGV: tokens in the order they were reserved.
RELEASE = """
local released = 0
for i = #ARGV, 1, -1 do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then
    local message = redis.call('HGET', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    if message then
      redis.call('RPUSH', KEYS[1], message)
      released = released + 1
    end
  end
end
return released
"""

#: Push back the deadlines of leases that still hold; returns how many held.
#: KEYS: leases. ARGV: lease_ms, tokens...
RENEW = _NOW + """
local deadline = now + tonumber(ARGV[1])
local held = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    held[#held + 1] = deadline
    held[#held + 1] = ARGV[i]
  end
end
if #held > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(held)) end
return #held / 2
"""

#: Keep a message delayed until ARGV[1] ms from now. KEYS: delayed.
#: ARGV: delay_ms, tag (16 characters) + message.
RETRY_LATER = _NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
return 1
"""

#: Keep a message aside with its reason; returns the new dead letter's id.
#: KEYS: dead, dead messages, dead reasons, dead times, dead sequence.
#: ARGV: message, reason.
DEAD_LETTER = """
local id = redis.call('INCR', KEYS[5])
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[1], id, id)
redis.call('HSET', KEYS[2], id, ARGV[1])
redis.call('HSET', KEYS[3], id, ARGV[2])
redis.call('HSET', KEYS[4], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
return id
"""

#: The oldest dead letters: {ids, messages, reasons, times}.
#: KEYS: dead, dead messages, dead reasons, dead times. ARGV: last index (-1: all).
DEAD_LETTERS = """
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]))
if #ids == 0 then return {{}, {}, {}, {}} end
return {
  ids,
  redis.call('HMGET', KEYS[2], unpack(ids)),
  redis.call('HMGET', KEYS[3], unpack(ids)),
  redis.call('HMGET', KEYS[4], unpack(ids)),
}
"""

#: Queue each replacement in place of its dead letter, in one step: a letter
#: is never both dead and queued, nor neither. Returns how many.
#: KEYS: dead, dead messages, dead reasons, dead times, queue.
#: ARGV: id, replacement, id, replacement...
REPLAY = """
local replayed = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[4], ARGV[i])
    redis.call('LPUSH', KEYS[5], ARGV[i + 1])
    replayed = replayed + 1
  end
end
return replayed
"""

#: Delete the named dead letters; returns how many there were.
#: KEYS: dead, dead messages, dead reasons, dead times. ARGV: ids.
PURGE_IDS = """
local purged = redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
redis.call('HDEL', KEYS[3], unpack(ARGV))
redis.call('HDEL', KEYS[4], unpack(ARGV))
return purged
"""

#: Delete every dead letter (the id sequence stays: ids are never reused).
#: UNLINK: Redis frees big hashes in the background instead of pausing.
#: KEYS: dead, dead messages, dead reasons, dead times.
PURGE_ALL = """
local purged = redis.call('ZCARD', KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return purged
"""

#: A consistent count of each place: {queued, reserved, delayed, dead}.
#: Staged messages and retries already due count as queued.
#: KEYS: queue, taking, leases, delayed, dead.
STATS = _NOW + """
local due = redis.call('ZCOUNT', KEYS[4], '-inf', now)
return {
  redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + due,
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]) - due,
  redis.call('ZCARD', KEYS[5]),
}
"""
