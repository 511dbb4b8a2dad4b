-- ROUTE: route up to ARGV[2] waiting events. KEYS and ARGV: the routing
-- keys and arguments (see _routing_scripts.py). Returns {routed, still
-- waiting, evicted}.
--#include check_version.lua
--#include routing.lua
local moved = route_pending(tonumber(ARGV[2]))
return {moved, waiting(), evicted}
