-- RELEASE: give deliveries back to the front of their queues, in their order,
-- if their lease still holds (an expired one was already given back).
-- KEYS: queue, wake, reserved, leases of each batch involved. ARGV: for
-- each, its token and the comma-separated 1-based indices given back.
--#include wake.lua
--#include batch.lua
local released = 0
-- The last batch first, and its last message first: the first ends up at the front.
for j = #KEYS / 4, 1, -1 do
  local queue = KEYS[4 * j - 3]
  local back = take_out(KEYS[4 * j - 1], KEYS[4 * j], ARGV[2 * j - 1], indices_of(ARGV[2 * j]))
  if back and #back > 0 then
    for i = #back, 1, -1 do redis.call('RPUSH', queue, back[i]) end
    wake(KEYS[4 * j - 2], #back, redis.call('LLEN', queue))
    released = released + #back
  end
end
return released
