-- ACK: forget acknowledged deliveries. KEYS: reserved and leases of each
-- subscription involved. ARGV: the count of tokens for each, then the tokens.
local pos = #KEYS / 2 + 1
for j = 1, #KEYS / 2 do
  local count = tonumber(ARGV[j])
  if count > 0 then
    redis.call('HDEL', KEYS[2 * j - 1], unpack(ARGV, pos, pos + count - 1))
    redis.call('ZREM', KEYS[2 * j], unpack(ARGV, pos, pos + count - 1))
  end
  pos = pos + count
end
return 1
