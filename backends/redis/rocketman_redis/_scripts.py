"""The Lua scripts of a subscription's queue: leasing, acknowledging, retries, dead letters.

Redis runs a script alone: no other command sees it half done, so a message
is never in two places (or none) at once. Every time a script compares or
sets a deadline comes from ``TIME``, the server's clock, because workers on
several machines disagree about the time. Each script names every key it
touches in ``KEYS`` (see :mod:`._lua` on Redis Cluster). The scripts move
bytes; none decodes a message. Routing and subscriptions are in
:mod:`._routing_scripts`.
"""

from __future__ import annotations

from ._lua import CHECK_VERSION, NOW, WAKE

__all__ = [
    "ACK", "DEAD_LETTER", "DEAD_LETTERS", "PURGE_ALL", "PURGE_IDS", "RELEASE", "RENEW", "REPLAY",
    "RETRY_LATER", "TAKE",
]


#: Move due retries and expired leases back to their queues, then lease up
#: to ARGV[1] messages from the hosted subscriptions, starting with the one
#: at ARGV[5] (the caller rotates it, so none starves), at most a fair share
#: of each queue (ARGV[4] workers of this process want work).
#: KEYS: for each hosted subscription: queue, wake, reserved, leases, delayed.
#: ARGV: max_count, lease_ms, token_prefix, reservers, first.
#: Returns ``{status, s, message, s, message...}`` where s is the 0-based
#: subscription index and the n-th message's lease token is prefix .. n;
#: status -2 when messages are left in a hosted queue, else the ms until the
#: next retry or lease falls due (-1: none), which bounds how long the
#: caller may block before it calls TAKE again.
TAKE = NOW + """
local n = #KEYS / 5
for s = 0, n - 1 do
  local queue, reserved, leases, delayed = KEYS[5 * s + 1], KEYS[5 * s + 3], KEYS[5 * s + 4], KEYS[5 * s + 5]
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
end
local want, reservers = tonumber(ARGV[1]), tonumber(ARGV[4])
local deadline = now + tonumber(ARGV[2])
local result = {0}
local taken = 0
local first = tonumber(ARGV[5]) % n
for step = 0, n - 1 do
  if taken >= want then break end
  local s = (first + step) % n
  local queue = KEYS[5 * s + 1]
  local queued = redis.call('LLEN', queue)
  if queued > 0 then
    local count = math.min(want - taken, math.ceil(queued / reservers))
    local messages = redis.call('RPOP', queue, count)
    local fields, scores = {}, {}
    for i = 1, #messages do
      local token = ARGV[3] .. (taken + i)
      fields[2 * i - 1] = token
      fields[2 * i] = messages[i]
      scores[2 * i - 1] = deadline
      scores[2 * i] = token
      result[#result + 1] = s
      result[#result + 1] = messages[i]
    end
    redis.call('HSET', KEYS[5 * s + 3], unpack(fields))
    redis.call('ZADD', KEYS[5 * s + 4], unpack(scores))
    taken = taken + #messages
    if #messages == queued then redis.call('DEL', KEYS[5 * s + 2]) end
  end
end
for s = 0, n - 1 do
  if redis.call('LLEN', KEYS[5 * s + 1]) > 0 then
    result[1] = -2
    return result
  end
end
local wake = -1
for s = 0, n - 1 do
  for _, key in ipairs({KEYS[5 * s + 5], KEYS[5 * s + 4]}) do
    local next_one = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if next_one[2] then
      local due = math.max(0, tonumber(next_one[2]) - now)
      if wake < 0 or due < wake then wake = due end
    end
  end
end
result[1] = wake
return result
"""

#: Forget acknowledged deliveries. KEYS: reserved and leases of each
#: subscription involved. ARGV: the count of tokens for each, then the tokens.
ACK = """
local pos = #KEYS / 2 + 1
for j = 1, #KEYS / 2 do
  local count = tonumber(ARGV[j])
  if count > 0 then
    redis.call('HDEL', KEYS[2 * j - 1], unpack(ARGV, pos, pos + count - 1))
    redis.call('ZREM', KEYS[2 * j], unpack(ARGV, pos, pos + count - 1))
  end
  pos = pos + count
end
return 1
"""

#: Give deliveries back to the front of their queues, in their order, if
#: their lease still holds (an expired one was already given back).
#: KEYS: queue, wake, reserved, leases of each subscription involved.
#: ARGV: the count of tokens for each, then the tokens in reserve order.
RELEASE = WAKE + """
local released = 0
local pos = #KEYS / 4 + 1
for j = 1, #KEYS / 4 do
  local queue, reserved, leases = KEYS[4 * j - 3], KEYS[4 * j - 1], KEYS[4 * j]
  local count = tonumber(ARGV[j])
  local back = 0
  for i = pos + count - 1, pos, -1 do
    if redis.call('ZREM', leases, ARGV[i]) == 1 then
      local message = redis.call('HGET', reserved, ARGV[i])
      redis.call('HDEL', reserved, ARGV[i])
      if message then
        redis.call('RPUSH', queue, message)
        back = back + 1
      end
    end
  end
  if back > 0 then wake(KEYS[4 * j - 2], back, redis.call('LLEN', queue)) end
  released = released + back
  pos = pos + count
end
return released
"""

#: Push back the deadlines of leases that still hold; returns how many held.
#: KEYS: the leases key of each subscription involved. ARGV: lease_ms, the
#: count of tokens for each, then the tokens.
RENEW = NOW + """
local deadline = now + tonumber(ARGV[1])
local held = 0
local pos = #KEYS + 2
for j = 1, #KEYS do
  local count = tonumber(ARGV[j + 1])
  local renewed = {}
  for i = pos, pos + count - 1 do
    if redis.call('ZSCORE', KEYS[j], ARGV[i]) then
      renewed[#renewed + 1] = deadline
      renewed[#renewed + 1] = ARGV[i]
    end
  end
  if #renewed > 0 then redis.call('ZADD', KEYS[j], 'XX', unpack(renewed)) end
  held = held + #renewed / 2
  pos = pos + count
end
return held
"""

#: Replace a delivery by a delayed retry, if its lease still holds: one step.
#: KEYS: reserved, leases, delayed. ARGV: token, delay_ms, tag (16
#: characters) + message. Returns 1 if recorded.
RETRY_LATER = NOW + """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
return 1
"""

#: Replace a delivery by a dead letter, if its lease still holds: one step.
#: KEYS: reserved, leases, the subscription's dead index, then dead, dead
#: messages, dead reasons, dead times, dead subscriptions, dead sequence.
#: ARGV: token, message, reason, subscription. Returns the id, or 0.
DEAD_LETTER = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local id = redis.call('INCR', KEYS[9])
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[4], id, id)
redis.call('ZADD', KEYS[3], id, id)
redis.call('HSET', KEYS[5], id, ARGV[2])
redis.call('HSET', KEYS[6], id, ARGV[3])
redis.call('HSET', KEYS[7], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
redis.call('HSET', KEYS[8], id, ARGV[4])
return id
"""

#: A page of dead letters, oldest first: {ids, messages, reasons, times, subscriptions}.
#: KEYS: an index of ids (every dead letter, or one subscription's), dead
#: messages, reasons, times, subscriptions. ARGV: first and last index.
DEAD_LETTERS = """
local ids = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if #ids == 0 then return {{}, {}, {}, {}, {}} end
return {
  ids,
  redis.call('HMGET', KEYS[2], unpack(ids)),
  redis.call('HMGET', KEYS[3], unpack(ids)),
  redis.call('HMGET', KEYS[4], unpack(ids)),
  redis.call('HMGET', KEYS[5], unpack(ids)),
}
"""

#: Queue each replacement for its subscription in place of its dead letter,
#: in one step: a letter is never both dead and queued, nor neither.
#: KEYS: subscriptions, dead, dead messages, reasons, times, subscriptions,
#: then queue, wake and dead index of each target subscription. ARGV: for
#: each letter: id, target (1-based), subscription name, replacement.
#: Returns how many were replayed.
REPLAY = WAKE + """
local replayed = 0
for i = 1, #ARGV, 4 do
  local id, target, name = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if redis.call('HEXISTS', KEYS[1], name) == 1 and redis.call('ZREM', KEYS[2], id) == 1 then
    for k = 3, 6 do redis.call('HDEL', KEYS[k], id) end
    local base = 6 + 3 * (target - 1)
    redis.call('ZREM', KEYS[base + 3], id)
    wake(KEYS[base + 2], 1, redis.call('LPUSH', KEYS[base + 1], ARGV[i + 3]))
    replayed = replayed + 1
  end
end
return replayed
"""

#: Delete the named dead letters; returns how many there were. KEYS: dead,
#: dead messages, reasons, times, subscriptions, then the dead index of
#: each subscription involved. ARGV: the count of ids for each of those
#: indexes (unattributed ids come last, beyond them), then the ids.
PURGE_IDS = """
local indexes = #KEYS - 5
local pos = indexes + 2
local purged = 0
for j = 0, indexes do
  local count = tonumber(ARGV[j + 1])
  if count > 0 then
    local ids = {unpack(ARGV, pos, pos + count - 1)}
    purged = purged + redis.call('ZREM', KEYS[1], unpack(ids))
    for k = 2, 5 do redis.call('HDEL', KEYS[k], unpack(ids)) end
    if j < indexes then redis.call('ZREM', KEYS[6 + j], unpack(ids)) end
  end
  pos = pos + count
end
return purged
"""

#: Delete every dead letter (the id sequence stays: ids are never reused).
#: UNLINK: Redis frees big hashes in the background instead of pausing.
#: KEYS: version, subscriptions, dead, dead messages, reasons, times,
#: subscriptions, then every subscription's dead index. ARGV: version.
PURGE_ALL = CHECK_VERSION + """
local purged = redis.call('ZCARD', KEYS[3])
redis.call('UNLINK', unpack(KEYS, 3))
return purged
"""
