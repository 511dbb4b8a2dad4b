-- KEEP_ALIVE: record that host ARGV[1] still hosts subscriptions; evict
-- parked events past their age. KEYS: subscriptions, parked, dropped, the
-- inbox, taking, the 0.1 leases and delayed, seen, then the hosts key of each
-- subscription. ARGV: host, park_max_age_ms, park_limit, the names (in the
-- order of their hosts keys). Returns {evicted, events waiting to be
-- routed, missing names...}.
--#include now.lua
--#include trim_parked.lua
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
