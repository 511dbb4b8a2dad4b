-- A lease covers a batch: TAKE keeps each batch it leases from a queue under
-- one token, in the subscription's reserved hash (token -> the messages,
-- msgpack'd, a settled one replaced by false) and its leases set (token ->
-- deadline), and counts the messages leased in the hash's field '#'. So a
-- batch costs a few commands, not a few per message. A token without the
-- final '*' is a lease of one message, as an earlier layout wrote it.
local function is_batch(token)
  return string.byte(token, -1) == 42
end
-- Forget the batch at token, whose `left` messages are all settled now, if
-- its lease holds. Returns 1 if it held.
local function forget(reserved, leases, token, left)
  if redis.call('ZREM', leases, token) == 0 then return 0 end
  redis.call('HDEL', reserved, token)
  if is_batch(token) then redis.call('HINCRBY', reserved, '#', -left) end
  return 1
end
-- Take the messages at the 1-based `indices` out of the batch at token, if
-- its lease holds; forget it when none is left. Returns them, in the order
-- of the indices (those already settled are skipped), or false when the
-- lease no longer holds.
local function take_out(reserved, leases, token, indices)
  if not redis.call('ZSCORE', leases, token) then return false end
  local packed = redis.call('HGET', reserved, token)
  if not packed then return false end
  if not is_batch(token) then
    forget(reserved, leases, token, 1)
    return {packed}
  end
  local messages = cmsgpack.unpack(packed)
  local out = {}
  for _, i in ipairs(indices) do
    if messages[i] then
      out[#out + 1] = messages[i]
      messages[i] = false
    end
  end
  local left = 0
  for i = 1, #messages do
    if messages[i] then left = left + 1 end
  end
  if left == 0 then
    redis.call('ZREM', leases, token)
    redis.call('HDEL', reserved, token)
  elseif #out > 0 then
    redis.call('HSET', reserved, token, cmsgpack.pack(messages))
  end
  if #out > 0 then redis.call('HINCRBY', reserved, '#', -#out) end
  return out
end
-- The messages of an expired lease still to handle, in batch order.
local function unsettled(token, packed)
  if not is_batch(token) then return {packed} end
  local out = {}
  for _, message in ipairs(cmsgpack.unpack(packed)) do
    if message then out[#out + 1] = message end
  end
  return out
end
-- 1-based indices from their comma-separated text.
local function indices_of(text)
  local found = {}
  for i in string.gmatch(text, '%d+') do found[#found + 1] = tonumber(i) end
  return found
end
