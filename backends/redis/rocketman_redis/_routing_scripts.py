"""The Lua scripts that route events into subscriptions, and keep the table of subscriptions.

An emit is one plain ``LPUSH`` onto the inbox ``{ns}:queue`` of an element
``"\\0" + name + "\\n" + envelope``: the name beside the bytes, so that no
JSON is parsed to route it (a producer in another language pushes the
envelope alone; its name is then read with cjson). Routers (a thread in
each process that hosts subscriptions, and a producer whose inbox grows)
move those elements into the queue of every subscription whose patterns
match, or into the parked log, in batches, with ROUTE.

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
"""

from __future__ import annotations

from ._lua import CHECK_VERSION, MATCH, NOW, PARK, WAKE

__all__ = ["KEEP_ALIVE", "LEAVE", "NO_TABLE", "ROUTE", "ROUTING_KEYS", "SUBSCRIBE", "UNSUBSCRIBE"]

#: How many fixed keys every routing script takes before the subscriptions'.
ROUTING_KEYS = 14
#: The version SUBSCRIBE is called with when the client sends no table.
NO_TABLE = "none"

# route_pending(limit): route up to limit events (0: all) of the inbox, of
# what a router left in taking, and what a 0.1 layout holds (expired leases,
# due retries); returns how many. waiting(): how many are still to route.
_ROUTE = MATCH + WAKE + PARK + """
local n = tonumber(ARGV[5])
local names, patterns, index = {}, {}, {}
for j = 1, n do
  names[j] = ARGV[5 + j]
  patterns[j] = ARGV[5 + n + j]
  index[names[j]] = j
end
-- TIME only when needed: most calls route without it.
local clock, now
local function time_now()
  if not now then
    clock = redis.call('TIME')
    now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  end
  return now
end
local targets_of, batches, parked, evicted = {}, {}, 0, 0
local function targets(event)
  local found = targets_of[event]
  if not found then
    found = {}
    for j = 1, n do
      if matches(event, patterns[j]) then found[#found + 1] = j end
    end
    targets_of[event] = found
  end
  return found
end
local function dead(message, reason)
  time_now()
  local id = redis.call('INCR', KEYS[14])
  redis.call('ZADD', KEYS[10], id, id)
  redis.call('HSET', KEYS[11], id, message)
  redis.call('HSET', KEYS[12], id, reason)
  redis.call('HSET', KEYS[13], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
end
local function deliver(j, message)
  local batch = batches[j]
  if not batch then
    batch = {}
    batches[j] = batch
  end
  batch[#batch + 1] = message
end
local function flush()
  for j, batch in pairs(batches) do
    for first = 1, #batch, 1000 do
      local last = math.min(#batch, first + 999)
      wake(KEYS[14 + 2 * j], last - first + 1, redis.call('LPUSH', KEYS[13 + 2 * j], unpack(batch, first, last)))
    end
  end
  batches = {}
end
local function route(element)
  local event, message
  if string.byte(element, 1) == 0 then
    local newline = string.find(element, '\\n', 2, true)
    if newline then
      event, message = string.sub(element, 2, newline - 1), string.sub(element, newline + 1)
    end
  else
    local ok, decoded = pcall(cjson.decode, element)
    if ok and type(decoded) == 'table' and type(decoded['name']) == 'string' then
      event, message = decoded['name'], element
    end
  end
  if not event then
    dead(element, 'malformed message: pushed to the inbox without a name to route it by '
      .. '(not a JSON object with a string "name")')
    return
  end
  local found = targets(event)
  if #found == 0 then
    redis.call('XADD', KEYS[3], '*', 'n', event, 'm', message)
    parked = parked + 1
    return
  end
  for i = 1, #found do deliver(found[i], message) end
end
-- A 0.1 retry is for one consumer: never its siblings, which already ran.
local function route_retry(message)
  local ok, decoded = pcall(cjson.decode, message)
  local consumer = ok and type(decoded) == 'table' and decoded['consumer']
  if type(consumer) ~= 'string' then
    route(message)
  elseif index[consumer] then
    deliver(index[consumer], message)
  else
    dead(message, 'a rocketman 0.1 retry for the consumer ' .. consumer .. ', which no '
      .. 'subscription is named after: replay it once a worker hosting it runs')
  end
end
-- Whether a 0.1 layout still holds leases or retries (one EXISTS for both).
local legacy = redis.call('EXISTS', KEYS[8], KEYS[9]) > 0
local function route_pending(limit)
  local moved = 0
  if legacy then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', time_now(), 'LIMIT', 0, 500)
    if #expired > 0 then
      local lost = redis.call('HMGET', KEYS[7], unpack(expired))
      for i = 1, #expired do
        if lost[i] then route(lost[i]) end
      end
      redis.call('HDEL', KEYS[7], unpack(expired))
      redis.call('ZREM', KEYS[8], unpack(expired))
      moved = moved + #expired
    end
    local due = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', time_now(), 'LIMIT', 0, 500)
    if #due > 0 then
      for i = 1, #due do route_retry(string.sub(due[i], 17)) end
      redis.call('ZREM', KEYS[9], unpack(due))
      moved = moved + #due
    end
  end
  -- What a router moved to taking first: it came before what is still in the inbox.
  for _, source in ipairs({KEYS[6], KEYS[5]}) do
    while limit == 0 or moved < limit do
      local want = 1000
      if limit > 0 then want = math.min(want, limit - moved) end
      local elements = redis.call('RPOP', source, want)
      if not elements then break end
      for i = 1, #elements do route(elements[i]) end
      moved = moved + #elements
      flush()
      if #elements < want then break end
    end
  end
  flush()
  if parked > 0 then
    evicted = evicted + trim_parked(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]))
    parked = 0
  end
  return moved
end
local function waiting()
  local count = redis.call('LLEN', KEYS[5])
  if legacy then
    count = count + redis.call('ZCOUNT', KEYS[8], '-inf', time_now())
      + redis.call('ZCOUNT', KEYS[9], '-inf', time_now())
  end
  return count
end
local B, A = 14 + 2 * n, 5 + 2 * n
"""

#: Route up to ARGV[2] waiting events. Returns {routed, still waiting, evicted}.
ROUTE = CHECK_VERSION + _ROUTE + """
local moved = route_pending(tonumber(ARGV[2]))
return {moved, waiting(), evicted}
"""

# parked_mark(): the id of the newest parked event, or now as an id.
_PARKED_MARK = """
local function parked_mark()
  local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if newest[1] then return newest[1][1] end
  local t = redis.call('TIME')
  return (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) .. '-0'
end
"""

#: Route everything waiting, then register subscriptions, hosted by a
#: host. KEYS: the routing keys, then created, seen and the parked marks,
#: then queue, wake and hosts of each subscription to register. ARGV: the
#: routing arguments, then host, k (how many to register), then name,
#: patterns (space-separated) and start ('parked' or 'now') of each.
#:
#: The table is needed only to route what waits: called with the version
#: NO_TABLE (and no subscriptions in the routing arguments), it registers
#: at once when nothing waits, and answers STALE otherwise. So a consumer
#: added to a running process costs one small call, not one the size of
#: the table.
#:
#: A new subscription copies the parked events that match it, in the order
#: they came, in this same step: those it never had the chance to see (a
#: name registered before, then removed, only what was parked since its
#: removal). Returns {evicted, then created (0/1), previous patterns or
#: '', copied of each}.
SUBSCRIBE = _PARKED_MARK + """
if ARGV[1] == '""" + NO_TABLE + """' then
  local waiting = redis.call('LLEN', KEYS[5]) + redis.call('LLEN', KEYS[6])
    + redis.call('EXISTS', KEYS[8], KEYS[9])
  if waiting > 0 then
    local reply = redis.call('HGETALL', KEYS[2])
    table.insert(reply, 1, redis.call('GET', KEYS[1]) or '0')
    table.insert(reply, 1, 'stale')
    return reply
  end
else
""" + CHECK_VERSION + """
end
""" + _ROUTE + """
if ARGV[1] ~= '""" + NO_TABLE + """' then route_pending(0) end
time_now()
local host, k = ARGV[A + 1], tonumber(ARGV[A + 2])
local done = {evicted}
local function register(name, wanted, start, queue, wake_key, hosts)
  redis.call('ZADD', hosts, now, host)
  redis.call('HSET', KEYS[B + 2], name, now)
  local old = redis.call('HGET', KEYS[2], name)
  if old == wanted then return 0, '', 0 end
  redis.call('HSET', KEYS[2], name, wanted)
  redis.call('INCR', KEYS[1])
  if old then return 0, old, 0 end
  redis.call('HSET', KEYS[B + 1], name, now)
  local copied = 0
  local seen_up_to = redis.call('HGET', KEYS[B + 3], name)
  if start == 'parked' then
    local cursor = '-'
    if seen_up_to then cursor = '(' .. seen_up_to end
    while true do
      local entries = redis.call('XRANGE', KEYS[3], cursor, '+', 'COUNT', 500)
      if #entries == 0 then break end
      local batch = {}
      for i = 1, #entries do
        local fields = entries[i][2]
        local event, message
        for f = 1, #fields, 2 do
          if fields[f] == 'n' then event = fields[f + 1] elseif fields[f] == 'm' then message = fields[f + 1] end
        end
        if event and message and matches(event, wanted) then batch[#batch + 1] = message end
      end
      for first = 1, #batch, 1000 do
        local last = math.min(#batch, first + 999)
        wake(wake_key, last - first + 1, redis.call('LPUSH', queue, unpack(batch, first, last)))
      end
      copied = copied + #batch
      cursor = '(' .. entries[#entries][1]
    end
  end
  redis.call('HSET', KEYS[B + 3], name, parked_mark())
  return 1, '', copied
end
for i = 0, k - 1 do
  local created, previous, copied = register(ARGV[A + 3 + 3 * i], ARGV[A + 4 + 3 * i],
    ARGV[A + 5 + 3 * i], KEYS[B + 4 + 3 * i], KEYS[B + 5 + 3 * i], KEYS[B + 6 + 3 * i])
  done[#done + 1] = created
  done[#done + 1] = previous
  done[#done + 1] = copied
end
return done
"""

#: Route everything waiting, then count, in one consistent snapshot:
#: {totals, rows, evicted}. Totals are {queued, reserved, delayed, dead,
#: parked, dropped}, with what a 0.1 layout still holds; each row is
#: {queued, reserved, delayed, dead} of a subscription, then (when ARGV[A+1]
#: is 1) created, last seen, and host, seen, host, seen... KEYS: the routing
#: keys, then created, seen, then leases, delayed, dead index and hosts of
#: each subscription. ARGV: the routing arguments, then with_hosts.
COUNTS = CHECK_VERSION + _ROUTE + """
route_pending(0)
time_now()
local function counts(queue, leases, delayed)
  local due = redis.call('ZCOUNT', delayed, '-inf', now)
  return redis.call('LLEN', queue) + due, redis.call('ZCARD', leases),
    redis.call('ZCARD', delayed) - due
end
local queued, reserved, delayed = counts(KEYS[5], KEYS[8], KEYS[9])
queued = queued + redis.call('LLEN', KEYS[6])
local rows = {}
for j = 1, n do
  local base = B + 2 + 4 * (j - 1)
  local q, r, d = counts(KEYS[13 + 2 * j], KEYS[base + 1], KEYS[base + 2])
  local row = {q, r, d, redis.call('ZCARD', KEYS[base + 3])}
  if ARGV[A + 1] == '1' then
    row[5] = redis.call('HGET', KEYS[B + 1], names[j]) or '0'
    row[6] = redis.call('HGET', KEYS[B + 2], names[j]) or ''
    local hosts = redis.call('ZRANGE', KEYS[base + 4], 0, -1, 'WITHSCORES')
    for h = 1, #hosts do row[6 + h] = hosts[h] end
  end
  rows[j] = row
  queued, reserved, delayed = queued + q, reserved + r, delayed + d
end
local totals = {queued, reserved, delayed, redis.call('ZCARD', KEYS[10]),
  redis.call('XLEN', KEYS[3]), tonumber(redis.call('GET', KEYS[4]) or '0')}
return {totals, rows, evicted}
"""

#: Record that host ARGV[1] still hosts subscriptions; evict parked events
#: past their age. KEYS: subscriptions, parked, dropped, the inbox, taking,
#: the 0.1 leases and delayed, seen, then the hosts key of each
#: subscription. ARGV: host, park_max_age_ms, park_limit, the names (in the
#: order of their hosts keys). Returns {evicted, events waiting to be
#: routed, missing names...}.
KEEP_ALIVE = NOW + PARK + """
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
local waiting = redis.call('LLEN', KEYS[4]) + redis.call('LLEN', KEYS[5])
  + redis.call('ZCOUNT', KEYS[6], '-inf', now) + redis.call('ZCOUNT', KEYS[7], '-inf', now)
table.insert(missing, 1, waiting)
table.insert(missing, 1, evicted)
return missing
"""

#: A host stops hosting subscriptions (a clean stop): forget it as their
#: host, remember now as when they were last hosted. KEYS: subscriptions,
#: seen, then the hosts key of each. ARGV: host, the names in that order.
LEAVE = NOW + """
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
#: time and subscription keys, then seen, the parked marks and the parked
#: log (KEYS[3] of parked_mark: the same position). ARGV: name. The name's
#: mark stays: registered again, it receives only what is parked from now
#: on, not again what it had. Returns 1 if it existed.
UNSUBSCRIBE = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
""" + _PARKED_MARK.replace("KEYS[3]", "KEYS[18]") + """
redis.call('HSET', KEYS[17], ARGV[1], parked_mark())
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
