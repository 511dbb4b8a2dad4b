-- A lease covers a batch: TAKE keeps each batch it leases from a queue under
-- one token, in the subscription's reserved hash (token -> the messages,
-- msgpack'd) and its leases set (token -> deadline), and counts the
-- messages leased in the hash's field '#'. So a batch costs a few commands,
-- not a few per message. What is settled of a batch before it is done (a
-- retry, a dead letter, a partial ack) is noted by index under token .. '!'
-- ("3,7,"): the batch itself is written once. A token without the final
-- '*' is a lease of one message, as an earlier layout wrote it: only expiry
-- meets one (a process settles only the batches it took).
local function is_batch(token)
  return string.byte(token, -1) == 42
end
-- The messages of an expired lease not settled yet, in order.
local function unsettled(token, packed, settled)
  if not is_batch(token) then return {packed} end
  local done = {}
  for i in string.gmatch(settled or '', '%d+') do done[tonumber(i)] = true end
  local out = {}
  for i, message in ipairs(cmsgpack.unpack(packed)) do
    if not done[i] then out[#out + 1] = message end
  end
  return out
end
-- Settle the messages at the 1-based `indices` (text: "2,5") of the batch
-- at token, if its lease holds; `whole` (the holder knows it) when they are
-- all it has left, and the batch is forgotten. Returns how many, or false
-- when the lease no longer holds. With `counted`, '#' is left alone: the
-- caller takes the count off itself (TAKE, in its own HINCRBY).
local function settle(reserved, leases, token, indices, whole, counted)
  local count = select(2, string.gsub(indices, '%d+', ''))
  if whole then
    if redis.call('ZREM', leases, token) == 0 then return false end
    redis.call('HDEL', reserved, token, token .. '!')
  else
    if not redis.call('ZSCORE', leases, token) then return false end
    local settled = redis.call('HGET', reserved, token .. '!') or ''
    redis.call('HSET', reserved, token .. '!', settled .. indices .. ',')
  end
  if not counted then redis.call('HINCRBY', reserved, '#', -count) end
  return count
end
-- The messages at `indices` of the batch at token, read before they are settled.
local function messages_at(reserved, token, indices)
  local packed = redis.call('HGET', reserved, token)
  if not packed then return {} end
  local messages, out = cmsgpack.unpack(packed), {}
  for i in string.gmatch(indices, '%d+') do out[#out + 1] = messages[tonumber(i)] end
  return out
end
