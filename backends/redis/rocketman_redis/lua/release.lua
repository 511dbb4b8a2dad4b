-- RELEASE: give deliveries back to the front of their queues, in their order,
-- if their lease still holds (an expired one was already given back).
-- KEYS: queue, wake, reserved, leases of each subscription involved.
-- ARGV: the count of tokens for each, then the tokens in reserve order.
--#include wake.lua
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
