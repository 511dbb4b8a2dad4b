-- ACK: forget acknowledged deliveries. KEYS: reserved and leases of each
-- batch involved. ARGV: for each, its token, the comma-separated 1-based
-- indices acknowledged, and '1' when they are all it has left, else '0'.
--#include batch.lua
for j = 1, #KEYS / 2 do
  settle(KEYS[2 * j - 1], KEYS[2 * j], ARGV[3 * j - 2], ARGV[3 * j - 1], ARGV[3 * j] == '1')
end
return 1
