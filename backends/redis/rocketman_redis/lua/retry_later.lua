-- RETRY_LATER: replace a delivery by a delayed retry, if its lease still
-- holds: one step. KEYS: reserved, leases, delayed. ARGV: token, the
-- delivery's 1-based index in its batch, '1' if it is all the batch has
-- left (else '0'), delay_ms, tag (RETRY_TAG_WIDTH characters) + message.
-- Returns 1 if recorded.
--#include now.lua
--#include batch.lua
if not settle(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3] == '1') then return 0 end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[5])
return 1
