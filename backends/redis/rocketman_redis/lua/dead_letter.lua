-- DEAD_LETTER: replace a delivery by a dead letter, if its lease still holds:
-- one step. KEYS: reserved, leases, the subscription's dead index, then dead,
-- dead messages, dead reasons, dead times, dead subscriptions, dead sequence.
-- ARGV: token, the delivery's 1-based index in its batch, '1' if it is all
-- the batch has left (else '0'), message, reason, subscription. Returns the
-- id, or 0.
--#include batch.lua
if not settle(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] == '1') then return 0 end
local id = redis.call('INCR', KEYS[9])
local clock = redis.call('TIME')
redis.call('ZADD', KEYS[4], id, id)
redis.call('ZADD', KEYS[3], id, id)
redis.call('HSET', KEYS[5], id, ARGV[4])
redis.call('HSET', KEYS[6], id, ARGV[5])
redis.call('HSET', KEYS[7], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
redis.call('HSET', KEYS[8], id, ARGV[6])
return id
