-- LEAVE: a host stops hosting subscriptions (a clean stop): forget it as
-- their host, remember now as when they were last hosted. KEYS:
-- subscriptions, seen, then the hosts key of each. ARGV: host, the names in
-- that order.
--#include now.lua
for i = 3, #KEYS do
  local name = ARGV[i - 1]
  if redis.call('ZREM', KEYS[i], ARGV[1]) == 1 and redis.call('HEXISTS', KEYS[1], name) == 1 then
    redis.call('HSET', KEYS[2], name, now)
  end
end
return 1
