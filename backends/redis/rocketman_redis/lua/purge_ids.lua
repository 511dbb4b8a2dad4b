-- PURGE_IDS: delete the named dead letters; returns how many there were.
-- KEYS: dead, dead messages, reasons, times, subscriptions, then the dead
-- index of each subscription involved. ARGV: the count of ids for each of
-- those indexes (unattributed ids come last, beyond them), then the ids.
local indexes = #KEYS - 5
local pos = indexes + 2
local purged = 0
for j = 0, indexes do
  local count = tonumber(ARGV[j + 1])
  if count > 0 then
    local ids = {unpack(ARGV, pos, pos + count - 1)}
    purged = purged + redis.call('ZREM', KEYS[1], unpack(ids))
    for k = 2, 5 do redis.call('HDEL', KEYS[k], unpack(ids)) end
    if j < indexes then redis.call('ZREM', KEYS[6 + j], unpack(ids)) end
  end
  pos = pos + count
end
return purged
