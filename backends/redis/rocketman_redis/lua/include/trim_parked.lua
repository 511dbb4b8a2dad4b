-- trim_parked(parked, dropped, limit, max_age_ms): evict parked events
-- beyond the bounds (count, age), count them in dropped; returns how many.
local function trim_parked(parked, dropped, limit, max_age_ms)
  local evicted = redis.call('XTRIM', parked, 'MAXLEN', limit)
  if max_age_ms > 0 then
    local t = redis.call('TIME')
    local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    evicted = evicted + redis.call('XTRIM', parked, 'MINID', ms - max_age_ms)
  end
  if evicted > 0 then redis.call('INCRBY', dropped, evicted) end
  return evicted
end
