-- What every routing script shares (see _routing_scripts.py for its KEYS
-- and ARGV). route_pending(limit): route up to limit events (0: all) of the
-- inbox, of what a router left in taking, and what a 0.1 layout holds
-- (expired leases, due retries); returns how many. waiting(): how many are
-- still to route. B and A: where each script's own KEYS and ARGV begin.
--#include matches.lua
--#include wake.lua
--#include trim_parked.lua
local n = tonumber(ARGV[5])
local names, patterns, index = {}, {}, {}
for j = 1, n do
  names[j] = ARGV[5 + j]
  patterns[j] = ARGV[5 + n + j]
  index[names[j]] = j
end
-- TIME only when needed: most calls route without it.
local clock, now
local function time_now()
  if not now then
    clock = redis.call('TIME')
    now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  end
  return now
end
local targets_of, batches, parked, evicted = {}, {}, 0, 0
local function targets(event)
  local found = targets_of[event]
  if not found then
    found = {}
    for j = 1, n do
      if matches(event, patterns[j]) then found[#found + 1] = j end
    end
    targets_of[event] = found
  end
  return found
end
local function dead(message, reason)
  time_now()
  local id = redis.call('INCR', KEYS[14])
  redis.call('ZADD', KEYS[10], id, id)
  redis.call('HSET', KEYS[11], id, message)
  redis.call('HSET', KEYS[12], id, reason)
  redis.call('HSET', KEYS[13], id, clock[1] .. '.' .. string.format('%06d', tonumber(clock[2])))
end
local function deliver(j, message)
  local batch = batches[j]
  if not batch then
    batch = {}
    batches[j] = batch
  end
  batch[#batch + 1] = message
end
local function flush()
  for j, batch in pairs(batches) do
    for first = 1, #batch, 1000 do
      local last = math.min(#batch, first + 999)
      wake(KEYS[14 + 2 * j], last - first + 1, redis.call('LPUSH', KEYS[13 + 2 * j], unpack(batch, first, last)))
    end
  end
  batches = {}
end
local function route(element)
  local event, message
  if string.byte(element, 1) == 0 then
    local newline = string.find(element, '\n', 2, true)
    if newline then
      event, message = string.sub(element, 2, newline - 1), string.sub(element, newline + 1)
    end
  else
    local ok, decoded = pcall(cjson.decode, element)
    if ok and type(decoded) == 'table' and type(decoded['name']) == 'string' then
      event, message = decoded['name'], element
    end
  end
  if not event then
    dead(element, 'malformed message: pushed to the inbox without a name to route it by '
      .. '(not a JSON object with a string "name")')
    return
  end
  local found = targets(event)
  if #found == 0 then
    redis.call('XADD', KEYS[3], '*', 'n', event, 'm', message)
    parked = parked + 1
    return
  end
  for i = 1, #found do deliver(found[i], message) end
end
-- A 0.1 retry is for one consumer: never its siblings, which already ran.
local function route_retry(message)
  local ok, decoded = pcall(cjson.decode, message)
  local consumer = ok and type(decoded) == 'table' and decoded['consumer']
  if type(consumer) ~= 'string' then
    route(message)
  elseif index[consumer] then
    deliver(index[consumer], message)
  else
    dead(message, 'a rocketman 0.1 retry for the consumer ' .. consumer .. ', which no '
      .. 'subscription is named after: replay it once a worker hosting it runs')
  end
end
-- Whether a 0.1 layout still holds leases or retries (one EXISTS for both).
local legacy = redis.call('EXISTS', KEYS[8], KEYS[9]) > 0
local function route_pending(limit)
  local moved = 0
  if legacy then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[8], '-inf', time_now(), 'LIMIT', 0, 500)
    if #expired > 0 then
      local lost = redis.call('HMGET', KEYS[7], unpack(expired))
      for i = 1, #expired do
        if lost[i] then route(lost[i]) end
      end
      redis.call('HDEL', KEYS[7], unpack(expired))
      redis.call('ZREM', KEYS[8], unpack(expired))
      moved = moved + #expired
    end
    local due = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', time_now(), 'LIMIT', 0, 500)
    if #due > 0 then
      for i = 1, #due do route_retry(string.sub(due[i], {{RETRY_TAG_WIDTH}} + 1)) end
      redis.call('ZREM', KEYS[9], unpack(due))
      moved = moved + #due
    end
  end
  -- What a router moved to taking first: it came before what is still in the inbox.
  for _, source in ipairs({KEYS[6], KEYS[5]}) do
    while limit == 0 or moved < limit do
      local want = 1000
      if limit > 0 then want = math.min(want, limit - moved) end
      local elements = redis.call('RPOP', source, want)
      if not elements then break end
      for i = 1, #elements do route(elements[i]) end
      moved = moved + #elements
      flush()
      if #elements < want then break end
    end
  end
  flush()
  if parked > 0 then
    evicted = evicted + trim_parked(KEYS[3], KEYS[4], tonumber(ARGV[3]), tonumber(ARGV[4]))
    parked = 0
  end
  return moved
end
local function waiting()
  local count = redis.call('LLEN', KEYS[5])
  if legacy then
    count = count + redis.call('ZCOUNT', KEYS[8], '-inf', time_now())
      + redis.call('ZCOUNT', KEYS[9], '-inf', time_now())
  end
  return count
end
local B, A = 14 + 2 * n, 5 + 2 * n
