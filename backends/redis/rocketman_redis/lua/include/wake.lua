-- wake(key, count, length): wake-up tokens for count messages just pushed
-- onto a queue now length long; none for messages beyond the queue's first
-- WAKE_CAP (enough to wake every blocked worker: see _lua.py).
local function wake(key, count, length)
  local tokens = math.min(count, {{WAKE_CAP}} - (length - count))
  if tokens > 0 then
    local ones = {}
    for i = 1, tokens do ones[i] = 1 end
    redis.call('LPUSH', key, unpack(ones))
  end
end
