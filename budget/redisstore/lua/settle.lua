-- Settle: end a hold, recording the actual cost as spent in every one of its
-- budgets (in the periods it was made in), even if it expired.
--
-- KEYS[2]  the hold
-- ARGV[6]  actual
-- ARGV[7]  the hold's seq
-- returns  {-1} for an unknown hold; otherwise {expired (0/1), amount held,
--          i, spent, held, limit, period end, key} of budget i, the one
--          with the least remaining afterwards

local actual = tonumber(ARGV[6])
local hk = KEYS[2]
local r = record(hk)
if not r then return {-1} end

local release = r.a
if r.x then release = 0 end
local s, h = {}, {}
for i = 1, r.n do
  s[i], h[i] = adjust(r.k[i], actual, -release, r.p[i], 0)
end
redis.call('DEL', hk)
redis.call('ZREM', holds, ARGV[7])

local expired = 0
if r.x then expired = 1 end
local i = tightest(r.l, s, h)
return {expired, r.a, i, s[i], h[i], r.l[i], r.p[i], r.k[i]}
