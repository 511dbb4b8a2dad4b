-- The version check of scripts that depend on the table of subscriptions.
-- KEYS[1] version, KEYS[2] the subscriptions hash; ARGV[1] the client's
-- version. When it changed, the script does nothing and answers
-- {STALE, version, name, patterns, ...}: the client takes the new table
-- and calls again.
local version = redis.call('GET', KEYS[1]) or '0'
if version ~= ARGV[1] then
  local reply = redis.call('HGETALL', KEYS[2])
  table.insert(reply, 1, version)
  table.insert(reply, 1, '{{STALE}}')
  return reply
end
