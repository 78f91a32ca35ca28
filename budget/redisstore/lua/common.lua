-- The start of every budget script: the arguments all scripts share, the
-- helpers, and the sweep that expires the Tag's holds whose TTL has run out.
-- Each operation's script is this file followed by the operation's own.
--
-- Keys of one Tag (all in one Cluster slot; P is Prefix .. '{' .. tag .. '}:'):
--   P .. 'holds'                        zset: live hold seq -> expiry (ms)
--   P .. 'seq'                          counter issuing hold seqs
--   P .. 'hold:' .. seq                 hash: a hold (see load)
--   P .. kind:id:period:start           hash: a budget in one period, with
--                                       s (spent), h (held), hx (the latest
--                                       expiry of any hold reserved in it)
-- The scripts reach a hold's budgets through the key names its record
-- keeps: every one of them shares the Tag's hash slot.
--
-- Amounts are integers below 2^53 (Micros are capped at 2^50), exact in
-- Lua's float64 numbers; they are written with string.format('%d').
--
-- KEYS[1]  P .. 'holds'
-- ARGV[1]  now (ms), or -1 for the Redis server's clock
-- ARGV[2]  hold TTL (ms)
-- ARGV[3]  settle grace (ms)
-- ARGV[4]  margin (ms) every key outlives its last use by
-- ARGV[5]  P .. 'hold:'

-- Redis before 5 must be told to replicate the writes rather than the script
-- (which reads TIME); from 7 on this is the only mode and a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local holdPrefix = ARGV[5]
local holds = KEYS[1]

local function int(n) return string.format('%d', n) end

-- fits is the rule of budget.Ledger: an amount fits while spent + held +
-- amount <= limit; 0 fits while the budget is not exhausted.
local function fits(limit, s, h, amount)
  if amount == 0 then return s + h < limit end
  return s + h + amount <= limit
end

-- read returns a budget's spent and held. A budget whose every hold has
-- expired holds nothing, even if (after a lost record) a hold was never
-- swept from it.
local function read(c)
  local v = redis.call('HMGET', c, 's', 'h', 'hx')
  local s, h = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if h ~= 0 and (tonumber(v[3]) or 0) <= now then
    h = 0
    redis.call('HSET', c, 'h', 0)
  end
  return s, h
end

-- adjust adds ds to a budget's spent and dh to its held, raises its hx to
-- e, and sets its TTL: until a grace and a margin after both its period end
-- p (0 for a lifetime budget) and the latest a hold made now could be
-- settled. A lifetime budget with spending keeps it for good; a budget with
-- nothing spent or held is deleted (an absent budget is an empty one).
local function adjust(c, ds, dh, p, e)
  local v = redis.call('HMGET', c, 's', 'h', 'hx')
  local s = (tonumber(v[1]) or 0) + ds
  local h = math.max((tonumber(v[2]) or 0) + dh, 0)
  if s == 0 and h == 0 then
    redis.call('DEL', c)
    return s, h
  end
  local hx = math.max(tonumber(v[3]) or 0, e)
  redis.call('HSET', c, 's', int(s), 'h', int(h), 'hx', int(hx))
  if p == 0 and s > 0 then
    redis.call('PERSIST', c)
  else
    redis.call('PEXPIRE', c, int(math.max(p, now + ttl) + grace + margin - now))
  end
  return s, h
end

-- keepUntil makes key live at least until at.
local function keepUntil(key, at)
  local left = redis.call('PTTL', key)
  if left < 0 or now + left < at then
    redis.call('PEXPIRE', key, int(at - now))
  end
end

-- load returns the hold record at hk, or nil: amount a, expiry e, expired
-- x, and its n budgets' keys k, limits l and period ends p.
local function load(hk)
  local f = redis.call('HGETALL', hk)
  if #f == 0 then return nil end
  local m = {}
  for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  local r = {a = tonumber(m.a), e = tonumber(m.e), x = m.x == '1', n = tonumber(m.n), k = {}, l = {}, p = {}}
  for i = 1, r.n do
    r.k[i], r.l[i], r.p[i] = m['k' .. i], tonumber(m['l' .. i]), tonumber(m['p' .. i])
  end
  return r
end

-- expire stops hold r (at hk) from reserving anything; its record stays
-- for Settle until its grace ends.
local function expire(hk, r)
  for i = 1, r.n do adjust(r.k[i], 0, -r.a, r.p[i], 0) end
  redis.call('HSET', hk, 'x', 1)
  r.x = true
end

-- record returns the hold record at hk if Settle can still use it (live,
-- or expired less than the grace ago), or nil.
local function record(hk)
  local r = load(hk)
  if not r then return nil end
  if not r.x and r.e <= now then
    expire(hk, r) -- missed by the sweep: its entry in holds was lost
  end
  if now >= r.e + grace then
    redis.call('DEL', hk)
    return nil
  end
  return r
end

-- tightest returns the index of the budget with the least remaining.
local function tightest(l, s, h)
  local best, left = 1, nil
  for i = 1, #l do
    local r = math.max(l[i] - s[i] - h[i], 0)
    if left == nil or r < left then best, left = i, r end
  end
  return best
end

-- Sweep: expire every hold of the Tag whose TTL has run out.
do
  local due = redis.call('ZRANGEBYSCORE', holds, '-inf', now)
  for _, seq in ipairs(due) do
    local hk = holdPrefix .. seq
    local r = load(hk)
    if r and not r.x then expire(hk, r) end
  end
  if #due > 0 then redis.call('ZREMRANGEBYSCORE', holds, '-inf', now) end
end
