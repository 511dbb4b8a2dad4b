-- parked_mark(parked): the id of the newest event of the parked log, or now
-- as an id.
local function parked_mark(parked)
  local newest = redis.call('XREVRANGE', parked, '+', '-', 'COUNT', 1)
  if newest[1] then return newest[1][1] end
  local t = redis.call('TIME')
  return (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) .. '-0'
end
