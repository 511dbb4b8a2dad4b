-- PUSH: one event, routed as it is pushed, when the client's table of
-- subscriptions is current and nothing waits in the inbox to be routed
-- before it (order); else onto the inbox, as a plain LPUSH would.
-- KEYS: version, subscriptions, the inbox, taking, then queue and wake of
-- each subscription the event matches by the client's table.
-- ARGV: the client's version, the event's name, its envelope.
-- Returns 0 when it went to the subscriptions; else the inbox's length
-- after it went there, or {STALE, version, name, patterns, ...} when the
-- table changed (the event is in the inbox then too: the router routes it
-- by the new table, and the client takes that table for its next push).
--#include wake.lua
local version = redis.call('GET', KEYS[1]) or '0'
-- One EXISTS asks both: a list exists only while it holds something.
if version ~= ARGV[1] or redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then
  local length = redis.call('LPUSH', KEYS[3], '\0' .. ARGV[2] .. '\n' .. ARGV[3])
  if version == ARGV[1] then return length end
  local reply = redis.call('HGETALL', KEYS[2])
  table.insert(reply, 1, version)
  table.insert(reply, 1, '{{STALE}}')
  return reply
end
for i = 5, #KEYS, 2 do
  wake(KEYS[i + 1], 1, redis.call('LPUSH', KEYS[i], ARGV[3]))
end
return 0
