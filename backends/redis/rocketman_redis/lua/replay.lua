-- REPLAY: queue each replacement for its subscription in place of its dead
-- letter, in one step: a letter is never both dead and queued, nor neither.
-- KEYS: subscriptions, dead, dead messages, reasons, times, subscriptions,
-- then queue, wake and dead index of each target subscription. ARGV: for
-- each letter: id, target (1-based), subscription name, replacement.
-- Returns how many were replayed.
--#include wake.lua
local replayed = 0
for i = 1, #ARGV, 4 do
  local id, target, name = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  if redis.call('HEXISTS', KEYS[1], name) == 1 and redis.call('ZREM', KEYS[2], id) == 1 then
    for k = 3, 6 do redis.call('HDEL', KEYS[k], id) end
    local base = 6 + 3 * (target - 1)
    redis.call('ZREM', KEYS[base + 3], id)
    wake(KEYS[base + 2], 1, redis.call('LPUSH', KEYS[base + 1], ARGV[i + 3]))
    replayed = replayed + 1
  end
end
return replayed
