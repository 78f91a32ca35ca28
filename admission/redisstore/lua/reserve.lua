-- Reserve: decide every claim of a request; if all fit, take them all, and
-- otherwise change nothing (beyond dropping what had expired anyway).
--
-- KEYS[1]    P .. 'seq'
-- KEYS[2..]  the nr rate buckets, then the ns slot sets, then for each of
--            the nb budgets its hash and its holds, in its current period
-- ARGV[5]    P .. 'res:'
-- ARGV[6..10] nr, ns, nb, the request's Cost, and 1 if the request is a
--            bare (admission.Request.Settles is false: nothing to settle), else 0
-- ARGV[11..] for each rate: n, unit, rate, burst; for each slot: its limit;
--            for each budget: its limit and its period's end (ms; 0 for
--            none)
-- returns    {allowed (0/1), seq, refused kind (0 none, 1 rate, 2 slot,
--            3 budget), its index (from 0), budget b (from 0; -1 when no
--            budget was looked at), b's spent, b's held, then for each rate
--            its {allowed, remaining, reset after, retry after}, then for
--            each slot its slots in use}
-- b is the budget that refused, or when allowed the one with the least
-- remaining afterwards (the first of them on a tie).

local resPrefix = ARGV[5]
local nr, ns, nb = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cost = tonumber(ARGV[9])
local bare = ARGV[10] == '1'
local a = 11 -- next ARGV
local rk, sk, bk = 2, 2 + nr, 2 + nr + ns -- first KEYS of each kind

local kind, index = 0, 0
local decisions, saves = {}, {}
for i = 1, nr do
  local key = KEYS[rk + i - 1]
  local d, save = decide(key, redis.call('GET', key), false, tonumber(ARGV[a]), tonumber(ARGV[a + 1]),
    tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
  a = a + 4
  decisions[i], saves[i] = d, save
  if d[1] == 0 and kind == 0 then kind, index = 1, i - 1 end
end

local inUse = {}
for i = 1, ns do
  local key = KEYS[sk + i - 1]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  inUse[i] = redis.call('ZCARD', key)
  if inUse[i] >= tonumber(ARGV[a]) and kind == 0 then kind, index = 2, i - 1 end
  a = a + 1
end

local function reply(allowed, seq, b, s, h)
  local out = {allowed, seq, kind, index, b, s, h}
  for i = 1, nr do
    for j = 1, 4 do out[#out + 1] = decisions[i][j] end
  end
  for i = 1, ns do out[#out + 1] = inUse[i] end
  return out
end

if kind ~= 0 then return reply(0, 0, -1, 0, 0) end
if bare then
  -- Nothing to settle (admission.Request.Settles): take the units, and
  -- make no reservation.
  for i = 1, nr do
    if saves[i] then saves[i]() end
  end
  return reply(1, 0, -1, 0, 0)
end

local limit, pend, s, h, hx = {}, {}, {}, {}, {}
for i = 1, nb do
  limit[i], pend[i] = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local b = bk + 2 * (i - 1)
  s[i], h[i], hx[i] = readBudget(KEYS[b], KEYS[b + 1])
  if not fits(limit[i], s[i], h[i], cost) then
    kind, index = 3, i - 1
    return reply(0, 0, i - 1, s[i], h[i])
  end
end

-- Every claim fits: take them all. Seqs start from the time in
-- microseconds, so that a Tag whose counter was lost never issues a seq
-- still in use.
local keep = ttl + grace + margin
local seq = redis.call('INCR', KEYS[1])
if seq == 1 then
  seq = now * 1000
  redis.call('SET', KEYS[1], int(seq), 'PX', int(keep))
else
  redis.call('PEXPIRE', KEYS[1], int(keep))
end
local id = int(seq)
local e = now + ttl
redis.call('SET', resPrefix .. id, struct.pack('<ddd', now, e, cost), 'PX', int(keep))

for i = 1, nr do
  if saves[i] then saves[i]() end
end
for i = 1, ns do
  local key = KEYS[sk + i - 1]
  redis.call('ZADD', key, int(e), id)
  redis.call('PEXPIRE', key, int(ttl + margin))
  inUse[i] = inUse[i] + 1
end

local best, left = -1, nil
local hold = id .. ':' .. int(cost)
for i = 1, nb do
  local b = bk + 2 * (i - 1)
  h[i] = h[i] + cost
  redis.call('HSET', KEYS[b], 'h', int(h[i]), 'hx', int(max(hx[i], e)))
  keepBudget(KEYS[b], pend[i], s[i])
  redis.call('ZADD', KEYS[b + 1], int(e), hold)
  redis.call('PEXPIRE', KEYS[b + 1], int(ttl + margin))
  local r = max(limit[i] - s[i] - h[i], 0)
  if left == nil or r < left then best, left = i, r end
end
if best < 0 then return reply(1, seq, -1, 0, 0) end
return reply(1, seq, best - 1, s[best], h[best])
