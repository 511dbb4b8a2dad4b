-- COUNTS: route everything waiting, then count, in one consistent snapshot:
-- {totals, rows, evicted}. Totals are {queued, reserved, delayed, dead,
-- parked, dropped}, with what a 0.1 layout still holds; each row is
-- {queued, reserved, delayed, dead} of a subscription, then (when ARGV[A+1]
-- is 1) created, last seen, and host, seen, host, seen... KEYS: the routing
-- keys, then created, seen, then reserved, delayed, dead index and hosts of
-- each subscription. ARGV: the routing arguments, then with_hosts.
--#include check_version.lua
--#include routing.lua
route_pending(0)
time_now()
-- reserved: how many messages are leased (0.1: the size of its leases set).
local function counts(queue, reserved, delayed)
  local due = redis.call('ZCOUNT', delayed, '-inf', now)
  return redis.call('LLEN', queue) + due, reserved, redis.call('ZCARD', delayed) - due
end
local queued, reserved, delayed = counts(KEYS[5], redis.call('ZCARD', KEYS[8]), KEYS[9])
queued = queued + redis.call('LLEN', KEYS[6])
local rows = {}
for j = 1, n do
  local base = B + 2 + 4 * (j - 1)
  local leased = tonumber(redis.call('HGET', KEYS[base + 1], '#') or '0')
  local q, r, d = counts(KEYS[13 + 2 * j], leased, KEYS[base + 2])
  local row = {q, r, d, redis.call('ZCARD', KEYS[base + 3])}
  if ARGV[A + 1] == '1' then
    row[5] = redis.call('HGET', KEYS[B + 1], names[j]) or '0'
    row[6] = redis.call('HGET', KEYS[B + 2], names[j]) or ''
    local hosts = redis.call('ZRANGE', KEYS[base + 4], 0, -1, 'WITHSCORES')
    for h = 1, #hosts do row[6 + h] = hosts[h] end
  end
  rows[j] = row
  queued, reserved, delayed = queued + q, reserved + r, delayed + d
end
local totals = {queued, reserved, delayed, redis.call('ZCARD', KEYS[10]),
  redis.call('XLEN', KEYS[3]), tonumber(redis.call('GET', KEYS[4]) or '0')}
return {totals, rows, evicted}
