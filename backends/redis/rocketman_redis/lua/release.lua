-- RELEASE: give deliveries back to the front of their queues, in their order,
-- if their lease still holds (an expired one was already given back).
-- KEYS: queue, wake, reserved, leases of each batch involved. ARGV: for
-- each, its token, the comma-separated 1-based indices given back, and '1'
-- when they are all it has left, else '0'.
--#include wake.lua
--#include batch.lua
local released = 0
-- The last batch first, and its last message first: the first ends up at the front.
for j = #KEYS / 4, 1, -1 do
  local queue, reserved, leases = KEYS[4 * j - 3], KEYS[4 * j - 1], KEYS[4 * j]
  local token, indices = ARGV[3 * j - 2], ARGV[3 * j - 1]
  local back = messages_at(reserved, token, indices)
  if settle(reserved, leases, token, indices, ARGV[3 * j] == '1') and #back > 0 then
    for i = #back, 1, -1 do redis.call('RPUSH', queue, back[i]) end
    wake(KEYS[4 * j - 2], #back, redis.call('LLEN', queue))
    released = released + #back
  end
end
return released
