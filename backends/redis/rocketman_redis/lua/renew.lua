-- RENEW: push back the deadlines of leases that still hold; returns how many
-- held. KEYS: the leases key of each subscription involved. ARGV: lease_ms,
-- the count of tokens for each, then the tokens.
--#include now.lua
local deadline = now + tonumber(ARGV[1])
local held = 0
local pos = #KEYS + 2
for j = 1, #KEYS do
  local count = tonumber(ARGV[j + 1])
  local renewed = {}
  for i = pos, pos + count - 1 do
    if redis.call('ZSCORE', KEYS[j], ARGV[i]) then
      renewed[#renewed + 1] = deadline
      renewed[#renewed + 1] = ARGV[i]
    end
  end
  if #renewed > 0 then redis.call('ZADD', KEYS[j], 'XX', unpack(renewed)) end
  held = held + #renewed / 2
  pos = pos + count
end
return held
