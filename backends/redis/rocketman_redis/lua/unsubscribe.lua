-- UNSUBSCRIBE: remove one subscription with its backlog and its dead
-- letters. KEYS: version, subscriptions, created, queue, wake, reserved,
-- leases, delayed, its dead index, hosts, then the dead letters' dead,
-- message, reason, time and subscription keys, then seen, the parked marks
-- and the parked log. ARGV: name. The name's mark stays: registered again,
-- it receives only what is parked from now on, not again what it had.
-- Returns 1 if it existed.
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
--#include parked_mark.lua
redis.call('HSET', KEYS[17], ARGV[1], parked_mark(KEYS[18]))
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
