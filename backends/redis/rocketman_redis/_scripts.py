"""The Lua scripts of the Redis storage, where several steps must be atomic.

Redis runs a script alone: no other command sees it half done, so a message
is never in two places (or none) at once, and an event is routed to the
subscriptions that exist at that instant. Every time a script compares or
sets a deadline comes from ``TIME``, the server's clock, because workers on
several machines disagree about the time.

**Cluster safety.** Each script names every key it touches in ``KEYS``, and
every key of a namespace has the namespace's hash tag, so they all live in
one slot and the scripts also run on Redis Cluster. A script never computes
a key from a subscription's name: the client does (it keeps the table of
subscriptions, with the version it read it at), and scripts that depend on
the table check that version first. When it changed, they do nothing and
answer ``{"stale", version, name, patterns, ...}``: the client takes the
new table and calls again.

The scripts move bytes; none decodes a message, except MIGRATE, which reads
the ``name`` of the messages a 0.1 producer pushed without one beside them.
"""

from __future__ import annotations

__all__ = [
    "ACK", "COUNTS", "DEAD_LETTER", "DEAD_LETTERS", "KEEP_ALIVE", "LEAVE", "MIGRATE", "PURGE_ALL",
    "PURGE_IDS", "PUSH", "PUSH_MANY", "RELEASE", "RENEW", "REPLAY", "RETRY_LATER", "SUBSCRIBE",
    "TAKE", "UNSUBSCRIBE", "WAKE_CAP",
]

#: A push leaves a wake-up token for blocked workers only while the queue
#: holds at most this many messages: enough to wake every thread that
#: waits; a longer queue means busy workers, who take again without blocking.
WAKE_CAP = 64

# Milliseconds since the epoch on the server's clock.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# The version check of scripts that depend on the table of subscriptions.
# KEYS[1] version, KEYS[2] the subscriptions hash; ARGV[1] the client's version.
_CHECK_VERSION = """
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then
  local reply = redis.call('HGETALL', KEYS[2])
  table.insert(reply, 1, version)
  table.insert(reply, 1, 'stale')
  return reply
end
"""

# Does the event name match one of the space-separated patterns? ``*``
# matches any characters; every other character matches itself.
_MATCH = """
local compiled = {}
local function matches(name, patterns)
  for pattern in string.gmatch(patterns, '%S+') do
    if not string.find(pattern, '*', 1, true) then
      if pattern == name then return true end
    else
      local lua = compiled[pattern]
      if not lua then
        local escaped = string.gsub(pattern, '[%^%$%(%)%%%.%[%]%+%-%?]', '%%%0')
        lua = '^' .. string.gsub(escaped, '%*', '.*') .. '$'
        compiled[pattern] = lua
      end
      if string.find(name, lua) then return true end
    end
  end
  return false
end
"""

# Wake-up tokens for ``count`` messages just pushed onto a queue now ``length`` long.
_WAKE = f"""
local function wake(key, count, length)
  local tokens = math.min(count, {WAKE_CAP} - (length - count))
  if tokens > 0 then
    local ones = {{}}
    for i = 1, tokens do ones[i] = 1 end
    redis.call('LPUSH', key, unpack(ones))
  end
end
"""

# Append to the parked log, then evict beyond its bounds (count, age); an
# eviction is counted in ``dropped``. Returns how many were evicted.
_PARK = """
local function trim_parked(parked, dropped, limit, max_age_ms)
  local evicted = redis.call('XTRIM', parked, 'MAXLEN', limit)
  if max_age_ms > 0 then
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    evicted = evicted + redis.call('XTRIM', parked, 'MINID', now - max_age_ms)
  end
  if evicted > 0 then redis.call('INCRBY', dropped, evicted) end
  return evicted
end
"""

#: Route one event. KEYS: version, subscriptions, then for each matching
#: subscription its queue and wake keys; or, when none matches, the parked
#: log and the dropped counter. ARGV: version, message, and when parking:
#: name, park_limit, park_max_age_ms. Returns how many parked events were
#: evicted (0), or the stale reply.
PUSH = _CHECK_VERSION + _WAKE + _PARK + """
if ARGV[3] then
  redis.call('XADD', KEYS[3], '*', 'n', ARGV[3], 'm', ARGV[2])
  return trim_parked(KEYS[3], KEYS[4], tonumber(ARGV[4]), tonumber(ARGV[5]))
end
for i = 3, #KEYS, 2 do
  wake(KEYS[i + 1], 1, redis.call('LPUSH', KEYS[i], ARGV[2]))
end
return 0
"""

#: Route several events, in order. KEYS: version, subscriptions, parked,
#: dropped, then queue and wake keys of each target subscription. ARGV:
#: version, park_limit, park_max_age_ms, m, the m messages, then for each
#: target: 0 (all m messages, in order) or a count c and c message indexes
#: (1-based); then the number of parked events p and p pairs (index, name).
PUSH_MANY = _CHECK_VERSION + _WAKE + _PARK + """
local m = tonumber(ARGV[4])
local pos = 5 + m
for j = 5, #KEYS, 2 do
  local count = tonumber(ARGV[pos])
  pos = pos + 1
  local length
  if count == 0 then
    count = m
    length = redis.call('LPUSH', KEYS[j], unpack(ARGV, 5, 4 + m))
  else
    local batch = {}
    for k = 1, count do
      batch[k] = ARGV[4 + tonumber(ARGV[pos])]
      pos = pos + 1
    end
    length = redis.call('LPUSH', KEYS[j], unpack(batch))
  end
  wake(KEYS[j + 1], count, length)
end
local parked = tonumber(ARGV[pos])
pos = pos + 1
if parked == 0 then return 0 end
for k = 1, parked do
  redis.call('XADD', KEYS[3], '*', 'n', ARGV[pos + 1], 'm', ARGV[4 + tonumber(ARGV[pos])])
  pos = pos + 2
end
return trim_parked(KEYS[3], KEYS[4], tonumber(ARGV[2]), tonumber(ARGV[3]))
"""

#: Register one subscription, hosted by ARGV[4]. KEYS: version,
#: subscriptions, created, parked, queue, wake, hosts, seen. ARGV: name, patterns
#: (space-separated), start ('parked' or 'now'), host. A new subscription
#: copies the parked events that match it, in the order they came, in this
#: same step. Returns {created (0/1), previous patterns or '', copied}.
SUBSCRIBE = _NOW + _MATCH + _WAKE + """
local name, patterns = ARGV[1], ARGV[2]
redis.call('ZADD', KEYS[7], now, ARGV[4])
redis.call('HSET', KEYS[8], name, now)
local old = redis.call('HGET', KEYS[2], name)
if old == patterns then return {0, '', 0} end
redis.call('HSET', KEYS[2], name, patterns)
redis.call('INCR', KEYS[1])
if old then return {0, old, 0} end
redis.call('HSET', KEYS[3], name, now)
local copied = 0
if ARGV[3] == 'parked' then
  local cursor = '-'
  while true do
    local entries = redis.call('XRANGE', KEYS[4], cursor, '+', 'COUNT', 500)
    if #entries == 0 then break end
    local batch = {}
    for i = 1, #entries do
      local fields = entries[i][2]
      local event, message
      for f = 1, #fields, 2 do
        if fields[f] == 'n' then event = fields[f + 1] elseif fields[f] == 'm' then message = fields[f + 1] end
      end
      if event and message and matches(event, patterns) then batch[#batch + 1] = message end
    end
    if #batch > 0 then
      for start = 1, #batch, 1000 do
        local length = redis.call('LPUSH', KEYS[5], unpack(batch, start, math.min(#batch, start + 999)))
        wake(KEYS[6], math.min(1000, #batch - start + 1), length)
      end
      copied = copied + #batch
    end
    cursor = '(' .. entries[#entries][1]
  end
end
return {1, '', copied}
"""

#: Record that host ARGV[1] still hosts subscriptions; evict parked events
#: past their age. KEYS: subscriptions, parked, dropped, the four 0.1 keys
#: that may hold messages (queue, taking, leases, delayed), seen, then the
#: hosts key of each subscription. ARGV: host, park_max_age_ms, park_limit,
#: the names (in the order of their hosts keys). Returns {evicted, inbox and
#: due 0.1 messages waiting, missing names...}.
KEEP_ALIVE = _NOW + _PARK + """
local missing = {}
for i = 9, #KEYS do
  local name = ARGV[i - 5]
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    redis.call('ZADD', KEYS[i], now, ARGV[1])
    redis.call('HSET', KEYS[8], name, now)
    -- Forget hosts gone for a day, and keep at most the 100 latest.
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - 86400000)
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -101)
  else
    missing[#missing + 1] = name
  end
end
local evicted = trim_parked(KEYS[2], KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[2]))
local legacy = redis.call('LLEN', KEYS[4]) + redis.call('LLEN', KEYS[5])
  + redis.call('ZCOUNT', KEYS[6], '-inf', now) + redis.call('ZCOUNT', KEYS[7], '-inf', now)
table.insert(missing, 1, legacy)
table.insert(missing, 1, evicted)
return missing
"""

#: A host stops hosting subscriptions (a clean stop): forget it as their
#: host, remember now as when they were last hosted. KEYS: subscriptions,
#: seen, then the hosts key of each. ARGV: host, the names in that order.
LEAVE = _NOW + """
for i = 3, #KEYS do
  local name = ARGV[i - 1]
  if redis.call('ZREM', KEYS[i], ARGV[1]) == 1 and redis.call('HEXISTS', KEYS[1], name) == 1 then
    redis.call('HSET', KEYS[2], name, now)
  end
end
return 1
"""

#: Remove one subscription with its backlog and its dead letters. KEYS:
#: version, subscriptions, created, queue, wake, reserved, leases, delayed,
#: its dead index, hosts, then the dead letters' dead, message, reason,
#: time and subscription keys, then seen. ARGV: name. Returns 1 if it existed.
UNSUBSCRIBE = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[16], ARGV[1])
redis.call('INCR', KEYS[1])
while true do
  local ids = redis.call('ZRANGE', KEYS[9], 0, 999)
  if #ids == 0 then break end
  redis.call('ZREM', KEYS[11], unpack(ids))
  for k = 12, 15 do redis.call('HDEL', KEYS[k], unpack(ids)) end
  redis.call('ZREM', KEYS[9], unpack(ids))
end
redis.call('UNLINK', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
return 1
"""

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
TAKE = _NOW + """
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
RELEASE = _WAKE + """
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
RENEW = _NOW + """
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
RETRY_LATER = _NOW + """
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
REPLAY = _WAKE + """
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
PURGE_ALL = _CHECK_VERSION + """
local purged = redis.call('ZCARD', KEYS[3])
redis.call('UNLINK', unpack(KEYS, 3))
return purged
"""

#: Counts, in one consistent snapshot: {totals, per subscription}. Totals
#: are {queued, reserved, delayed, dead, parked, dropped} and include what
#: a 0.1 layout still holds; each subscription's row is {queued, reserved,
#: delayed, dead, created, last seen, host, seen, host, seen...} (from
#: created on only when ARGV[2] is 1). KEYS: version, subscriptions,
#: created, parked, dropped, dead, the 0.1 queue, taking, leases and
#: delayed, seen, then for each subscription: queue, leases, delayed, dead
#: index, hosts. ARGV: version, with_hosts, the names.
COUNTS = _CHECK_VERSION + _NOW + """
local function counts(queue, leases, delayed)
  local due = redis.call('ZCOUNT', delayed, '-inf', now)
  return redis.call('LLEN', queue) + due, redis.call('ZCARD', leases),
    redis.call('ZCARD', delayed) - due
end
local queued, reserved, delayed = counts(KEYS[7], KEYS[9], KEYS[10])
queued = queued + redis.call('LLEN', KEYS[8])
local rows = {}
for s = 0, (#KEYS - 11) / 5 - 1 do
  local base = 11 + 5 * s
  local q, r, d = counts(KEYS[base + 1], KEYS[base + 2], KEYS[base + 3])
  local row = {q, r, d, redis.call('ZCARD', KEYS[base + 4])}
  if ARGV[2] == '1' then
    row[5] = redis.call('HGET', KEYS[3], ARGV[3 + s]) or '0'
    row[6] = redis.call('HGET', KEYS[11], ARGV[3 + s]) or ''
    local hosts = redis.call('ZRANGE', KEYS[base + 5], 0, -1, 'WITHSCORES')
    for h = 1, #hosts do row[6 + h] = hosts[h] end
  end
  rows[#rows + 1] = row
  queued, reserved, delayed = queued + q, reserved + r, delayed + d
end
local totals = {queued, reserved, delayed, redis.call('ZCARD', KEYS[6]),
  redis.call('XLEN', KEYS[4]), tonumber(redis.call('GET', KEYS[5]) or '0')}
return {totals, rows}
"""

#: Route what the inbox ``{ns}:queue`` holds into the subscriptions: what
#: producers in other languages (and 0.1 producers, during a rolling deploy)
#: pushed there, then 0.1 retries falling due (to the consumer they name,
#: else by name) and expired 0.1 leases. Reads each message's name with
#: cjson, the only script that decodes; a message without one is dead-lettered.
#: KEYS: version, subscriptions, parked, dropped, the 0.1 queue, taking,
#: reserved, leases, delayed, then dead, dead messages, reasons, times,
#: dead sequence, then queue and wake of each subscription. ARGV: version,
#: batch, park_limit, park_max_age_ms, then the subscriptions' names in
#: the order of their keys. Returns {moved, still waiting}.
MIGRATE = _CHECK_VERSION + _NOW + _MATCH + _WAKE + _PARK + """
local batch = tonumber(ARGV[2])
local names, patterns, index = {}, {}, {}
for j = 5, #ARGV do
  names[#names + 1] = ARGV[j]
  patterns[#patterns + 1] = redis.call('HGET', KEYS[2], ARGV[j]) or ''
  index[ARGV[j]] = #names
end
local pushed, parked, moved = {}, 0, 0
local function push(j, message)
  redis.call('LPUSH', KEYS[13 + 2 * j], message)
  pushed[j] = (pushed[j] or 0) + 1
end
local function dead(message, reason)
  local id = redis.call('INCR', KEYS[14])
  redis.call('ZADD', KEYS[10], id, id)
  redis.call('HSET', KEYS[11], id, message)
  redis.call('HSET', KEYS[12], id, reason)
  redis.call('HSET', KEYS[13], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
end
local function route(message, targeted)
  moved = moved + 1
  local ok, decoded = pcall(cjson.decode, message)
  if not ok or type(decoded) ~= 'table' or type(decoded['name']) ~= 'string' then
    dead(message, 'malformed message: pushed to the inbox without a name to route it by '
      .. '(not a JSON object with a string "name")')
    return
  end
  local consumer = decoded['consumer']
  if targeted and type(consumer) == 'string' then
    -- A 0.1 retry is for one consumer: never its siblings, which already ran.
    if index[consumer] then
      push(index[consumer], message)
    else
      dead(message, 'a rocketman 0.1 retry for the consumer ' .. consumer .. ', which no '
        .. 'subscription is named after: replay it once a worker hosting it runs')
    end
    return
  end
  local hit = false
  for j = 1, #names do
    if matches(decoded['name'], patterns[j]) then
      push(j, message)
      hit = true
    end
  end
  if not hit then
    redis.call('XADD', KEYS[3], '*', 'n', decoded['name'], 'm', message)
    parked = parked + 1
  end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', now, 'LIMIT', 0, batch)
if #expired > 0 then
  local lost = redis.call('HMGET', KEYS[7], unpack(expired))
  for i = 1, #expired do
    if lost[i] then route(lost[i], false) end
  end
  redis.call('HDEL', KEYS[7], unpack(expired))
  redis.call('ZREM', KEYS[8], unpack(expired))
end
local due = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', now, 'LIMIT', 0, batch)
for i = 1, #due do route(string.sub(due[i], 17), true) end
if #due > 0 then redis.call('ZREM', KEYS[9], unpack(due)) end
for _, source in ipairs({KEYS[6], KEYS[5]}) do
  local messages = redis.call('RPOP', source, batch) or {}
  for i = 1, #messages do route(messages[i], false) end
end
for j, count in pairs(pushed) do
  wake(KEYS[14 + 2 * j], count, redis.call('LLEN', KEYS[13 + 2 * j]))
end
if parked > 0 then trim_parked(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4])) end
local left = redis.call('LLEN', KEYS[5]) + redis.call('LLEN', KEYS[6])
  + redis.call('ZCARD', KEYS[8]) + redis.call('ZCOUNT', KEYS[9], '-inf', now)
return {moved, left}
"""
