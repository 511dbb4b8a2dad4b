-- SUBSCRIBE: route everything waiting, then register subscriptions, hosted
-- by a host. KEYS: the routing keys, then created, seen and the parked
-- marks, then queue, wake and hosts of each subscription to register. ARGV:
-- the routing arguments, then host, k (how many to register), then name,
-- patterns (space-separated) and start ('parked' or 'now') of each.
--
-- The table is needed only to route what waits: called with the version
-- NO_TABLE (and no subscriptions in the routing arguments), it registers at
-- once when nothing waits, and answers STALE otherwise. So a consumer added
-- to a running process costs one small call, not one the size of the table.
--
-- A new subscription copies the parked events that match it, in the order
-- they came, in this same step: those it never had the chance to see (a
-- name registered before, then removed, only what was parked since its
-- removal). Returns {evicted, then created (0/1), previous patterns or '',
-- copied of each}.
--#include parked_mark.lua
if ARGV[1] == '{{NO_TABLE}}' then
  local waiting = redis.call('LLEN', KEYS[5]) + redis.call('LLEN', KEYS[6])
    + redis.call('EXISTS', KEYS[8], KEYS[9])
  if waiting > 0 then
    local reply = redis.call('HGETALL', KEYS[2])
    table.insert(reply, 1, redis.call('GET', KEYS[1]) or '0')
    table.insert(reply, 1, '{{STALE}}')
    return reply
  end
else
  --#include check_version.lua
end
--#include routing.lua
if ARGV[1] ~= '{{NO_TABLE}}' then route_pending(0) end
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
  redis.call('HSET', KEYS[B + 3], name, parked_mark(KEYS[3]))
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
