-- TAKE: move due retries and expired leases back to their queues, then lease
-- up to ARGV[1] messages from the hosted subscriptions, starting with the one
-- at ARGV[5] (the caller rotates it, so none starves), at most a fair share
-- of each queue (ARGV[4] workers of this process want work).
-- KEYS: for each hosted subscription: queue, wake, reserved, leases, delayed.
-- ARGV: max_count, lease_ms, token_prefix, reservers, first, scan ('1':
-- look for due retries and expired leases; a busy worker asks now and then,
-- not at every batch), then the worker's last batch to acknowledge first:
-- for each batch involved, its subscription's index, token, indices and
-- whole (as ACK takes them).
-- Returns {status, s, messages, s, messages...} where s is the 0-based
-- subscription index and messages the batch leased from its queue under
-- the token prefix .. s .. '*' (see batch.lua); status TAKE_MORE_QUEUED
-- when messages are left in a hosted queue, else the
-- ms until the next retry or lease falls due (TAKE_NOTHING_DUE: none), which
-- bounds how long the caller may block before it calls TAKE again.
--#include now.lua
--#include batch.lua
local n = #KEYS / 5
-- settled[s]: how many the acknowledgements took off subscription s's count
-- of leased messages, applied with its new batch's in one HINCRBY.
local settled = {}
for a = 7, #ARGV, 4 do
  local s = tonumber(ARGV[a])
  local count = settle(KEYS[5 * s + 3], KEYS[5 * s + 4], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3] == '1', true)
  if count then settled[s] = (settled[s] or 0) + count end
end
for s = 0, ARGV[6] == '1' and n - 1 or -1 do
  local queue, reserved, leases, delayed = KEYS[5 * s + 1], KEYS[5 * s + 3], KEYS[5 * s + 4], KEYS[5 * s + 5]
  -- Bounded batches keep the script short; the next call moves the rest.
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 256)
  if #due > 0 then
    for i = 1, #due do
      -- Members are a tag (so identical retries stay distinct) + the message.
      redis.call('LPUSH', queue, string.sub(due[i], {{RETRY_TAG_WIDTH}} + 1))
    end
    redis.call('ZREM', delayed, unpack(due))
  end
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 256)
  if #expired > 0 then
    local fields = {}
    for i = 1, #expired do
      fields[2 * i - 1] = expired[i]
      fields[2 * i] = expired[i] .. '!'
    end
    local lost = redis.call('HMGET', reserved, unpack(fields))
    local count = 0
    for i = #expired, 1, -1 do
      if lost[2 * i - 1] then
        local messages = unsettled(expired[i], lost[2 * i - 1], lost[2 * i])
        -- To the front of the line (the right end), the first of a batch
        -- last, to be taken first: they have waited long enough.
        for m = #messages, 1, -1 do redis.call('RPUSH', queue, messages[m]) end
        if is_batch(expired[i]) then count = count + #messages end
      end
    end
    redis.call('HDEL', reserved, unpack(fields))
    redis.call('ZREM', leases, unpack(expired))
    if count > 0 then redis.call('HINCRBY', reserved, '#', -count) end
  end
end
local want, reservers = tonumber(ARGV[1]), tonumber(ARGV[4])
local deadline = now + tonumber(ARGV[2])
local result = {0}
local taken = 0
local first = tonumber(ARGV[5]) % n
-- left[s]: what subscription s's queue still holds, once looked at.
local left = {}
for step = 0, n - 1 do
  if taken >= want then break end
  local s = (first + step) % n
  local queue = KEYS[5 * s + 1]
  local queued = redis.call('LLEN', queue)
  left[s] = queued
  if queued > 0 then
    local count = math.min(want - taken, math.ceil(queued / reservers))
    local messages = redis.call('RPOP', queue, count)
    local token = ARGV[3] .. s .. '*'
    redis.call('HSET', KEYS[5 * s + 3], token, cmsgpack.pack(messages))
    redis.call('HINCRBY', KEYS[5 * s + 3], '#', #messages - (settled[s] or 0))
    settled[s] = nil
    redis.call('ZADD', KEYS[5 * s + 4], deadline, token)
    result[#result + 1] = s
    result[#result + 1] = messages
    taken = taken + #messages
    left[s] = queued - #messages
    if left[s] == 0 then redis.call('DEL', KEYS[5 * s + 2]) end
  end
end
for s, count in pairs(settled) do redis.call('HINCRBY', KEYS[5 * s + 3], '#', -count) end
local more = false
for s = 0, n - 1 do
  if (left[s] or redis.call('LLEN', KEYS[5 * s + 1])) > 0 then
    more = true
    break
  end
end
if more then
  result[1] = {{TAKE_MORE_QUEUED}}
  return result
end
-- TAKE_NOTHING_DUE until a due time is found (any due time is >= 0).
local wake = {{TAKE_NOTHING_DUE}}
for s = 0, n - 1 do
  for _, key in ipairs({KEYS[5 * s + 5], KEYS[5 * s + 4]}) do
    local next_one = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if next_one[2] then
      local due = math.max(0, tonumber(next_one[2]) - now)
      if wake < 0 or due < wake then wake = due end
    end
  end
end
result[1] = wake
return result
