-- Extend: add to a hold, in every one of its budgets or nowhere, and restart
-- its TTL. A hold that expired is reserved again, whole.
--
-- KEYS[2]  the hold
-- ARGV[6]  more
-- ARGV[7]  the hold's seq
-- returns  {-1} for an unknown hold; otherwise {allowed (0/1), i, spent,
--          held, limit, period end, key} of budget i: the first with no room
--          when refused, the one with the least remaining when allowed

local more = tonumber(ARGV[6])
local hk = KEYS[2]
local r = record(hk)
if not r then return {-1} end

local add = more
if r.x then add = r.a + more end
local s, h = {}, {}
for i = 1, r.n do
  s[i], h[i] = read(r.k[i])
  if (r.x or more > 0) and not fits(r.l[i], s[i], h[i], add) then
    return {0, i, s[i], h[i], r.l[i], r.p[i], r.k[i]}
  end
end

local e = now + ttl
for i = 1, r.n do
  s[i], h[i] = adjust(r.k[i], 0, add, r.p[i], e)
end
redis.call('HSET', hk, 'a', int(r.a + more), 'e', int(e), 'x', 0)
redis.call('PEXPIRE', hk, int(e + grace + margin - now))
redis.call('ZADD', holds, int(e), ARGV[7])
keepUntil(holds, e + grace + margin)

local i = tightest(r.l, s, h)
return {1, i, s[i], h[i], r.l[i], r.p[i], r.k[i]}
