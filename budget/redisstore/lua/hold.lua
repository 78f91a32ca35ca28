-- Hold: reserve an amount in every one of a request's budgets, or nowhere.
--
-- KEYS[2]    P .. 'seq'
-- KEYS[3..]  the budgets, in their current periods
-- ARGV[6]    amount
-- ARGV[7..]  for each budget: its limit, its period's end (ms; 0 for none)
-- returns    {1, seq, i, spent, held} when held, i being the budget with
--            the least remaining afterwards; {0, 0, i, spent, held} when
--            refused, i being the first budget with no room

local amount = tonumber(ARGV[6])
local n = #KEYS - 2
local l, p, s, h = {}, {}, {}, {}
for i = 1, n do
  l[i], p[i] = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  s[i], h[i] = read(KEYS[i + 2])
  if not fits(l[i], s[i], h[i], amount) then
    return {0, 0, i, s[i], h[i]}
  end
end

-- Seqs start from the time in microseconds, so that a Tag whose seq key
-- expired never issues an id it issued before.
local seq = redis.call('INCR', KEYS[2])
if seq == 1 then
  seq = now * 1000
  redis.call('SET', KEYS[2], int(seq))
end
redis.call('PEXPIRE', KEYS[2], int(ttl + grace + margin))

local e = now + ttl
local rec = {'a', int(amount), 'e', int(e), 'x', 0, 'n', n}
for i = 1, n do
  s[i], h[i] = adjust(KEYS[i + 2], 0, amount, p[i], e)
  local j = #rec
  rec[j + 1], rec[j + 2] = 'k' .. i, KEYS[i + 2]
  rec[j + 3], rec[j + 4] = 'l' .. i, int(l[i])
  rec[j + 5], rec[j + 6] = 'p' .. i, int(p[i])
end
local hk = holdPrefix .. int(seq)
redis.call('HSET', hk, unpack(rec))
redis.call('PEXPIRE', hk, int(e + grace + margin - now))
redis.call('ZADD', holds, int(e), int(seq))
keepUntil(holds, e + grace + margin)

local i = tightest(l, s, h)
return {1, seq, i, s[i], h[i]}
