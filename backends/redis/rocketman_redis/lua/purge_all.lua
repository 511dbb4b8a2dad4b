-- PURGE_ALL: delete every dead letter (the id sequence stays: ids are never
-- reused). UNLINK: Redis frees big hashes in the background instead of
-- pausing. KEYS: version, subscriptions, dead, dead messages, reasons, times,
-- subscriptions, then every subscription's dead index. ARGV: version.
--#include check_version.lua
local purged = redis.call('ZCARD', KEYS[3])
redis.call('UNLINK', unpack(KEYS, 3))
return purged
