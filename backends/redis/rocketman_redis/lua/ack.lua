-- ACK: forget acknowledged deliveries. KEYS: reserved and leases of each
-- batch involved. ARGV: for each, its token, how many of its messages are
-- left, and '' when these are all of them (the batch is forgotten whole),
-- else the comma-separated 1-based indices acknowledged.
--#include batch.lua
for j = 1, #KEYS / 2 do
  local token, left, indices = ARGV[3 * j - 2], tonumber(ARGV[3 * j - 1]), ARGV[3 * j]
  if indices == '' then
    forget(KEYS[2 * j - 1], KEYS[2 * j], token, left)
  else
    take_out(KEYS[2 * j - 1], KEYS[2 * j], token, indices_of(indices))
  end
end
return 1
