-- Reserve: decide every claim of a request; if all fit, take them all, and
-- otherwise change nothing (beyond sweeping what had expired anyway).
--
-- ARGV[5..9] nr, ns, nb, the request's Cost, and 1 if the request is bare
--            (admission.Request.Settles is false: nothing to settle), else 0
-- ARGV[10]   the fields of its slots and budgets, encoded for its record
--            (see packRes)
-- ARGV[11..] for each rate: its field and struct.pack('<dddd', n, unit,
--            rate, burst); for each slot: its field and limit; for each
--            budget: its field and struct.pack('<dddd', limit, and the
--            start, end and previous start of its current period (ms; 0,
--            0, 0 for a lifetime budget))
-- returns    {allowed (0/1), seq, refused kind (0 none, 1 rate, 2 slot,
--            3 budget), its index (from 0), budget b (from 0; -1 when no
--            budget was looked at), b's spent, b's held, then for each rate
--            its {allowed, remaining, reset after, retry after}, then for
--            each slot its slots in use}
-- b is the budget that refused, or when allowed the one with the least
-- remaining afterwards (the first of them on a tie).

local nr, ns, nb = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cost = tonumber(ARGV[8])
local bare = ARGV[9] == '1'
local ra, sa, ba = 11, 11 + 2 * nr, 11 + 2 * nr + 2 * ns -- first ARGV of each kind

local names = {'_q', '_x', '_n'}
for i = 1, nr do names[#names + 1] = ARGV[ra + 2 * (i - 1)] end
for i = 1, ns do names[#names + 1] = ARGV[sa + 2 * (i - 1)] end
for i = 1, nb do names[#names + 1] = ARGV[ba + 2 * (i - 1)] end
local v = redis.call('HMGET', H, unpack(names))
if swept(v[3]) then v = redis.call('HMGET', H, unpack(names)) end
local rv, sv, bv = 3, 3 + nr, 3 + nr + ns -- v[rv + i] is rate i's value

local kind, index = 0, 0
local decisions, kv, need = {}, {}, 0
for i = 1, nr do
  local a = ra + 2 * (i - 1)
  local n, unit, rate, burst = unpackS('<dddd', ARGV[a + 1])
  local d, val, full = decide(v[rv + i], false, n, unit, rate, burst)
  decisions[i] = d
  if d[1] == 0 and kind == 0 then kind, index = 1, i - 1 end
  if val then
    kv[#kv + 1], kv[#kv + 2] = ARGV[a], val
    need = max(need, full)
  end
end

local inUse = {}
for i = 1, ns do
  inUse[i] = tonumber(v[sv + i]) or 0
  if inUse[i] >= tonumber(ARGV[sa + 2 * (i - 1) + 1]) and kind == 0 then kind, index = 2, i - 1 end
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
  if #kv > 0 then
    local x = keep(v[2], need)
    if x then kv[#kv + 1], kv[#kv + 2] = '_x', x end
    hset(kv)
    if x then expire(x) end
  end
  return reply(1, 0, -1, 0, 0)
end

local limit, pend, budgets, at, s, h = {}, {}, {}, {}, {}, {}
for i = 1, nb do
  local start, prev
  limit[i], start, pend[i], prev = unpackS('<dddd', ARGV[ba + 2 * (i - 1) + 1])
  local b = readBudget(v[bv + i], start)
  if b[1] < start then
    -- A new period: the one that ended is kept if it is the one before.
    if b[1] == prev then
      b = {start, 0, 0, b[1], b[2], b[3]}
    else
      b = {start, 0, 0, 0, 0, 0}
    end
  end
  budgets[i], at[i] = b, period(b, start)
  if at[i] then
    s[i], h[i] = b[at[i]], b[at[i] + 1]
  else
    -- A period before both kept (a clock far behind the others'): it
    -- holds nothing this call can see, and its hold is not recorded.
    s[i], h[i] = 0, 0
  end
  if not fits(limit[i], s[i], h[i], cost) then
    kind, index = 3, i - 1
    return reply(0, 0, i - 1, s[i], h[i])
  end
end

-- Every claim fits: take them all. Seqs start from the time in
-- microseconds, so that a Tag whose state was lost never issues a seq
-- still in use.
local seq = tonumber(v[1])
if seq then seq = seq + 1 else seq = now * 1000 end
local id = int(seq)
local e = now + ttl
for i = 1, ns do
  inUse[i] = inUse[i] + 1
  -- (Lua spells numbers below 10^14 exactly.)
  kv[#kv + 1], kv[#kv + 2] = ARGV[sa + 2 * (i - 1)], inUse[i]
end
need = max(need, e + grace + margin)
local best, left = -1, nil
for i = 1, nb do
  local b = budgets[i]
  h[i] = h[i] + cost
  if at[i] then
    b[at[i] + 1] = h[i]
    kv[#kv + 1], kv[#kv + 2] = ARGV[ba + 2 * (i - 1)], packBudget(b)
  end
  if pend[i] == 0 then
    -- A lifetime budget with money spent is kept for good.
    if s[i] > 0 then need = 'p' end
  elseif need ~= 'p' then
    need = max(need, max(pend[i], now + ttl) + grace + margin)
  end
  local r = max(limit[i] - s[i] - h[i], 0)
  if left == nil or r < left then best, left = i, r end
end
kv[#kv + 1], kv[#kv + 2] = '_q', id
kv[#kv + 1], kv[#kv + 2] = 'q' .. id, packRes(now, e, cost, ARGV[10])
local n = tonumber(v[3])
if not n or e < n then kv[#kv + 1], kv[#kv + 2] = '_n', int(e) end
local x = keep(v[2], need)
if x then kv[#kv + 1], kv[#kv + 2] = '_x', x end
hset(kv)
redis.call('ZADD', Z, int(e), id)
if x then expire(x) end

if best < 0 then return reply(1, seq, -1, 0, 0) end
return reply(1, seq, best - 1, s[best], h[best])
