-- DEAD_LETTER: replace a delivery by a dead letter, if its lease still holds:
-- one step. KEYS: reserved, leases, the subscription's dead index, then dead,
-- dead messages, dead reasons, dead times, dead subscriptions, dead sequence.
-- ARGV: token, message, reason, subscription. Returns the id, or 0.
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
