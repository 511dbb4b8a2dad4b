-- DEAD_LETTERS: a page of dead letters, oldest first:
-- {ids, messages, reasons, times, subscriptions}.
-- KEYS: an index of ids (every dead letter, or one subscription's), dead
-- messages, reasons, times, subscriptions. ARGV: first and last index.
local ids = redis.call('ZRANGE', KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
if #ids == 0 then return {{}, {}, {}, {}, {}} end
return {
  ids,
  redis.call('HMGET', KEYS[2], unpack(ids)),
  redis.call('HMGET', KEYS[3], unpack(ids)),
  redis.call('HMGET', KEYS[4], unpack(ids)),
  redis.call('HMGET', KEYS[5], unpack(ids)),
}
