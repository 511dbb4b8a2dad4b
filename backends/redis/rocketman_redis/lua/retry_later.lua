-- RETRY_LATER: replace a delivery by a delayed retry, if its lease still
-- holds: one step. KEYS: reserved, leases, delayed. ARGV: token, the
-- delivery's 1-based index in its batch, delay_ms, tag (RETRY_TAG_WIDTH
-- characters) + message. Returns 1 if recorded.
--#include now.lua
--#include batch.lua
local out = take_out(KEYS[1], KEYS[2], ARGV[1], {tonumber(ARGV[2])})
if not out or #out == 0 then return 0 end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
return 1
