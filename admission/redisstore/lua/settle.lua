-- Settle: end a reservation, once. Frees its slots, ends its budget holds
-- recording the actual cost as spent in the periods it was made in, and
-- gives back the unused units of its Refund claims.
--
-- ARGV[5]    seq
-- ARGV[6..9] the actual cost (at most the request's Cost), nr, ns, nb
-- ARGV[10..] for each of the nr buckets to give units back to: its field
--            and struct.pack('<dddd', the units, unit, rate, burst); then
--            the field of each slot, then the field of each budget
-- returns    {-1} for an unknown reservation, else {expired (0/1)}

local q = 'q' .. ARGV[5]
local actual = tonumber(ARGV[6])
local nr, ns, nb = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local ra, sa, ba = 10, 10 + 2 * nr, 10 + 2 * nr + ns -- first ARGV of each kind

local names = {q, '_x'}
for i = 1, nr do names[#names + 1] = ARGV[ra + 2 * (i - 1)] end
for i = 1, ns + nb do names[#names + 1] = ARGV[sa + i - 1] end
local v = redis.call('HMGET', H, unpack(names))
local rec = v[1]
if not rec then return {-1} end
local made, e, held = unpackS('<ddd', rec)
local open = string.byte(rec, 25) == 0 -- its slots and holds not yet swept
-- Past its grace a reservation is forgotten: it records nothing, and
-- only gives back what no sweep has yet.
local forgotten = now >= e + grace
if forgotten then actual = 0 else actual = min(actual, held) end

local kv, drops, need = {}, {q}, nil
for i = 1, nr do
  local a = ra + 2 * (i - 1)
  -- A missing bucket is full: nothing to give back.
  if v[2 + i] and not forgotten then
    local n, unit, rate, burst = unpackS('<dddd', ARGV[a + 1])
    local _, val = decide(v[2 + i], true, n, unit, rate, burst)
    if val then kv[#kv + 1], kv[#kv + 2] = ARGV[a], val end
  end
end

if open then
  for i = 1, ns do
    local f = ARGV[sa + i - 1]
    local c = max((tonumber(v[2 + nr + i]) or 0) - 1, 0)
    if c == 0 then
      drops[#drops + 1] = f
    else
      kv[#kv + 1], kv[#kv + 2] = f, c
    end
  end
end

for i = 1, nb do
  local val = v[2 + nr + ns + i]
  -- A budget the reservation held nothing in (the hold of a clock far
  -- behind the others') records nothing.
  if val then
    local b = readBudget(val, 0)
    local p = periodOf(b, made)
    if p and (open or not forgotten) then
      if open then b[p + 1] = max(b[p + 1] - held, 0) end
      b[p] = addSpent(b[p], actual)
      kv[#kv + 1], kv[#kv + 2] = ARGV[ba + i - 1], packBudget(b)
      -- A lifetime budget with money spent is kept for good.
      if b[1] == 0 and b[p] > 0 then need = 'p' end
    end
  end
end

local x = need and keep(v[2], need)
if x then kv[#kv + 1], kv[#kv + 2] = '_x', x end
hset(kv)
redis.call('HDEL', H, unpack(drops))
redis.call('ZREM', Z, ARGV[5])
if x then expire(x) end

if forgotten then return {-1} end
if now >= e then return {1} end
return {0}
