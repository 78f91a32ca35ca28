-- Settle: end a reservation, once. Frees its slots, ends its budget holds
-- recording the actual cost as spent in the periods it was made in, and
-- gives back the unused units of its Refund claims.
--
-- KEYS[1]    the reservation, P .. 'res:' .. seq
-- KEYS[2..]  the nr buckets to give units back to, then the ns slot sets,
--            then for each of the nb budgets the hash and holds of each
--            period the reservation may have been made in
-- ARGV[5]    seq
-- ARGV[6..9] the actual cost (at most the request's Cost), nr, ns, nb
-- ARGV[10..] for each bucket: the units to give back, unit, rate, burst;
--            for each budget: its number m of periods, then for each its
--            start and end (ms; 0 and 0 for a lifetime budget)
-- returns    {-1} for an unknown reservation, else {expired (0/1)}

local rec = redis.call('GET', KEYS[1])
if not rec then return {-1} end
local made, e, held = struct.unpack('<ddd', rec)
redis.call('DEL', KEYS[1])
if now >= e + grace then return {-1} end -- forgotten

local id = ARGV[5]
local actual = min(tonumber(ARGV[6]), held)
local nr, ns, nb = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a = 10
local k = 2

for i = 1, nr do
  local key = KEYS[k]
  k = k + 1
  -- A missing bucket is full: nothing to give back.
  local st = redis.call('GET', key)
  if st then
    local _, save = decide(key, st, true, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
    if save then save() end
  end
  a = a + 4
end

-- An expired reservation's slots were freed already; its members, if not
-- yet swept, go now.
for i = 1, ns do
  redis.call('ZREM', KEYS[k], id)
  k = k + 1
end

local hold = id .. ':' .. int(held)
for i = 1, nb do
  local m = tonumber(ARGV[a])
  a = a + 1
  for j = 1, m do
    local start, pend = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local b, z = KEYS[k], KEYS[k + 1]
    a, k = a + 2, k + 2
    if pend == 0 or (start <= made and made < pend) then
      -- The period it was made in. A hold still in z was still counted
      -- in h, expired or not.
      local changed = false
      if redis.call('ZREM', z, hold) == 1 then
        redis.call('HINCRBY', b, 'h', int(-held))
        changed = true
      end
      if actual > 0 then
        -- HINCRBY keeps spent exact in Redis whatever it grows to.
        keepBudget(b, pend, redis.call('HINCRBY', b, 's', int(actual)))
      elseif changed then
        keepBudget(b, pend, tonumber(redis.call('HGET', b, 's')) or 0)
      end
    end
  end
end

if now >= e then return {1} end
return {0}
