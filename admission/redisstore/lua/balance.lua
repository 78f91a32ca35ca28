-- Balance: a budget's spent and held in one period.
--
-- ARGV[5]  the budget's field
-- ARGV[6]  the start of the period (ms; 0 for a lifetime budget)
-- returns  {spent, held}

local v = redis.call('HMGET', H, '_n', ARGV[5])
if swept(v[1]) then v[2] = redis.call('HGET', H, ARGV[5]) end
local start = tonumber(ARGV[6])
local b = readBudget(v[2], start)
local p = period(b, start)
if not p then return {0, 0} end
return {b[p], b[p + 1]}
