"""Pieces of Lua the storage's scripts share.

**Cluster safety.** Every script names every key it touches in ``KEYS``,
and every key of a namespace has the namespace's hash tag, so they all live
in one slot and the scripts also run on Redis Cluster. A script never
computes a key from a subscription's name: the client does (it keeps the
table of subscriptions, with the version it read it at), and scripts that
depend on the table check that version first (:data:`CHECK_VERSION`). When
it changed, they do nothing and answer ``{"stale", version, name, patterns,
...}``: the client takes the new table and calls again.
"""

from __future__ import annotations

__all__ = ["CHECK_VERSION", "MATCH", "NOW", "PARK", "WAKE", "WAKE_CAP"]

#: A push leaves a wake-up token for blocked workers only while the queue
#: holds at most this many messages: enough to wake every thread that
#: waits; a longer queue means busy workers, who take again without blocking.
WAKE_CAP = 64

#: ``now``: milliseconds since the epoch on the server's clock (and ``clock``).
NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

#: The version check of scripts that depend on the table of subscriptions.
#: KEYS[1] version, KEYS[2] the subscriptions hash; ARGV[1] the client's version.
CHECK_VERSION = """
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then
  local reply = redis.call('HGETALL', KEYS[2])
  table.insert(reply, 1, version)
  table.insert(reply, 1, 'stale')
  return reply
end
"""

#: ``matches(name, patterns)``: does the event name match one of the
#: space-separated patterns? ``*`` matches any characters; every other
#: character matches itself.
MATCH = """
local compiled = {}
local function matches(name, patterns)
  for pattern in string.gmatch(patterns, '%S+') do
    if not string.find(pattern, '*', 1, true) then
      if pattern == name then return true end
    else
      local lua = compiled[pattern]
      if not lua then
        local escaped = string.gsub(pattern, '[%^%$%(%)%%%.%[%]%+%-%?]', '%%%0')
        lua = '^' .. string.gsub(escaped, '%*', '.*') .. '$'
        compiled[pattern] = lua
      end
      if string.find(name, lua) then return true end
    end
  end
  return false
end
"""

#: ``wake(key, count, length)``: wake-up tokens for ``count`` messages just
#: pushed onto a queue now ``length`` long.
WAKE = f"""
local function wake(key, count, length)
  local tokens = math.min(count, {WAKE_CAP} - (length - count))
  if tokens > 0 then
    local ones = {{}}
    for i = 1, tokens do ones[i] = 1 end
    redis.call('LPUSH', key, unpack(ones))
  end
end
"""

#: ``trim_parked(parked, dropped, limit, max_age_ms)``: evict parked events
#: beyond the bounds (count, age), count them in ``dropped``; returns how many.
PARK = """
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
"""
