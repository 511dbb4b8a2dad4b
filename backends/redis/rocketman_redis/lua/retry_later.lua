-- RETRY_LATER: replace a delivery by a delayed retry, if its lease still
-- holds: one step. KEYS: reserved, leases, delayed. ARGV: token, delay_ms,
-- tag (RETRY_TAG_WIDTH characters) + message. Returns 1 if recorded.
--#include now.lua
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[3])
return 1
