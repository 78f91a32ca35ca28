-- Release: end a hold without recording any spending.
--
-- KEYS[2]  the hold
-- ARGV[6]  the hold's seq
-- returns  1, or -1 for an unknown hold

local hk = KEYS[2]
local r = record(hk)
if not r then return -1 end
if not r.x then
  for i = 1, r.n do adjust(r.k[i], 0, -r.a, r.p[i], 0) end
end
redis.call('DEL', hk)
redis.call('ZREM', holds, ARGV[6])
return 1
