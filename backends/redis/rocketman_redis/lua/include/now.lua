-- now: milliseconds since the epoch on the server's clock (and clock).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
