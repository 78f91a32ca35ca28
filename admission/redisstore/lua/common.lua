-- The start of the admission library of Redis functions: the arguments
-- all of them share, a Tag's state and how it expires, the token bucket (a
-- transcription of internal/bucket), budgets in their periods, and the
-- sweep of expired reservations. Each operation is a function whose body
-- is the operation's file (see store.go, library), run after begin.
--
-- A Tag's state is two keys, in one Cluster slot:
--
-- KEYS[1]  hash, the state itself:
--   'r' .. holder NUL key   a token bucket: struct.pack('<ddd', balance,
--                           the millisecond it was computed at, unit)
--   'c' .. holder NUL key   the slots in use
--   'b' .. kind:id:period   a budget: struct.pack('<dddddd', start, spent,
--                           held, and the same of the period before) where
--                           start is the period's first millisecond (0 for
--                           a lifetime budget, or for no previous period)
--   'q' .. seq              a live reservation (see packRes)
--   '_q'                    the last seq issued
--   '_n'                    no reservation expires before this (ms)
--   '_x'                    the keys are kept until this (ms), or 'p':
--                           for good
-- KEYS[2]  zset: the seq of each reservation, scored by the millisecond
--          its sweep is due (its expiry, then the end of its settle
--          grace), and '~' at +inf, so that the set lives with the hash.
--
-- Every call reads the fields it needs with one HMGET and writes them with
-- one HSET, so its work is a handful of commands whatever the request
-- claims. Every number is an integer below 2^53, exact in Lua's float64
-- numbers: bucket values by internal/bucket's MaxScaled, amounts because
-- Micros are at most 2^50; spent saturates at 2^53 (see store.go). Numbers
-- written to Redis as text go through int ('%d'), which spells them
-- exactly.
--
-- Every function starts with begin(KEYS, ARGV), whose arguments are
--   ARGV[1]  now (ms), the caller's clock
--   ARGV[2]  TTL of a reservation (ms)
--   ARGV[3]  settle grace (ms)
--   ARGV[4]  margin (ms) every key outlives its last use by

local H, Z, now, ttl, grace, margin
local floor, ceil, min, max, pack, unpackS

local function begin(KEYS, ARGV)
  H, Z = KEYS[1], KEYS[2]
  now, ttl, grace, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  -- (math and struct can be reached while a function runs, not while
  -- its library loads.)
  floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
  pack, unpackS = struct.pack, struct.unpack
end

local function int(n) return string.format('%d', n) end

-- decide is bucket.Decide, line by line, for OpAllow (refund false) and
-- OpRefund (refund true) on the bucket whose stored value is s (false for
-- a missing field: a full bucket). It returns the decision {allowed (0/1),
-- remaining, reset after (ms), retry after (ms)}, and when the bucket
-- changed its new value and the instant it is full again (ms).
local function decide(s, refund, n, unit, rate, burst)
  local full = burst * unit
  local bal, ts = full, now
  if s then
    local su
    bal, ts, su = unpackS('<ddd', s)
    if su ~= unit then
      -- The policy for this key changed: carry whole units over.
      bal = min(max(floor(bal / su), -burst), burst) * unit
    end
    bal = min(bal, full)
    if now > ts then
      -- Refill, comparing before multiplying so that a long idle key
      -- cannot overflow.
      local need = full - bal
      if now - ts >= ceil(need / rate) then
        bal = full
      else
        bal = bal + (now - ts) * rate
      end
      ts = now
    end
  end
  -- lag > 0 when the stored state is ahead of this caller's clock (another
  -- instance's clock runs ahead); waits are measured from the caller's now.
  local lag = ts - now

  local allowed, write, retry = 0, false, 0
  if not refund then
    if n > burst then
      retry = lag + ceil(full / rate)
    elseif n == 0 then
      if bal >= unit then allowed = 1 else retry = lag + ceil((unit - bal) / rate) end
    elseif bal >= n * unit then
      bal = bal - n * unit
      allowed, write = 1, true
    else
      retry = lag + ceil((n * unit - bal) / rate)
    end
  else
    if n > 0 then
      -- Capping n first keeps n * unit within MaxScaled.
      bal = min(bal + min(n, burst) * unit, full)
      write = true
    end
    if bal >= unit then allowed = 1 else retry = lag + ceil((unit - bal) / rate) end
  end

  local remaining = floor(max(bal, 0) / unit)
  local reset = 0
  if bal < full then reset = lag + ceil((full - bal) / rate) end
  local d = {allowed, remaining, reset, retry}
  if not write then return d end
  -- Kept until the bucket is full again (a missing field is a full
  -- bucket), plus a second for differences between the clocks.
  return d, pack('<ddd', bal, ts, unit), now + ceil((full - bal) / rate) + max(lag, 0) + 1000
end

-- fits is the rule of budget.Ledger: an amount fits while spent + held +
-- amount <= limit; 0 fits while the budget is not exhausted.
local function fits(limit, s, h, amount)
  if amount == 0 then return s + h < limit end
  return s + h + amount <= limit
end

-- A budget's value unpacked: {start, spent, held, previous start, its
-- spent, its held}; a missing field is a budget with nothing in period
-- start.
local function readBudget(v, start)
  if not v then return {start, 0, 0, 0, 0, 0} end
  local a, b, c, d, e, f = unpackS('<dddddd', v)
  return {a, b, c, d, e, f}
end

local function packBudget(b) return pack('<dddddd', b[1], b[2], b[3], b[4], b[5], b[6]) end

-- period returns the index in budget b of the spent of the period that
-- starts at start (held follows it), or nil when b keeps neither it nor
-- the one before.
local function period(b, start)
  if b[1] == start then return 2 end
  if b[4] == start and start ~= 0 then return 5 end
  return nil
end

-- periodOf returns the index in b of the spent of the period that a
-- reservation made at made was held in: the latest period that started by
-- then (a lifetime budget has one, from 0).
local function periodOf(b, made)
  if made >= b[1] then return 2 end
  if b[4] ~= 0 and made >= b[4] then return 5 end
  return nil
end

-- addSpent adds amount to a spent, saturating at 2^53.
local function addSpent(s, amount) return min(s + amount, 9007199254740992) end

-- A reservation: struct.pack('<dddB', made, expiry, cost, swept (0/1)),
-- then the state fields it holds a slot or a budget amount in, as the
-- caller encodes them: struct.pack('<I4', their number), then each as
-- struct.pack('<I4', length) .. field.
local function packRes(made, e, cost, fields)
  return pack('<dddB', made, e, cost, 0) .. fields
end

local function resFields(rec)
  local fields, n, pos = {}, unpackS('<I4', rec, 26)
  for i = 1, n do
    local len
    len, pos = unpackS('<I4', rec, pos)
    fields[i] = string.sub(rec, pos, pos + len - 1)
    pos = pos + len
  end
  return fields
end

-- hset writes the fields and values in list kv, if any.
local function hset(kv)
  if #kv > 0 then redis.call('HSET', H, unpack(kv)) end
end

-- keep returns the '_x' that makes the keys outlive need (ms), or keeps
-- them for good when need is 'p', given x, the '_x' read; or nil when x
-- covers need already. Keys are extended by a TTL beyond need, so that a
-- busy Tag extends them once a TTL, not once a call. Write the '_x' with
-- the call's other fields, then expire the keys by it.
local function keep(x, need)
  if x == 'p' then return nil end
  if need == 'p' then return 'p' end
  local until_ = tonumber(x)
  if until_ and need <= until_ then return nil end
  return int(need + ttl)
end

local function expire(x)
  redis.call('ZADD', Z, '+inf', '~')
  if x == 'p' then
    redis.call('PERSIST', H)
    redis.call('PERSIST', Z)
  else
    local ms = int(tonumber(x) - now)
    redis.call('PEXPIRE', H, ms)
    redis.call('PEXPIRE', Z, ms)
  end
end

-- sweepLimit bounds the reservations one call sweeps: a larger backlog
-- (an instance that died with that many requests open) is swept over the
-- calls that follow, each still counting what it has not swept as held.
local sweepLimit = 256

-- sweep ends the reservations due by now. At its expiry a reservation
-- gives back its slots and budget holds, and is kept for its settle grace;
-- at the end of the grace it is deleted. It returns the new '_n': the
-- earliest instant another sweep is due, or false for none.
local function sweep()
  local due = redis.call('ZRANGEBYSCORE', Z, '-inf', now, 'LIMIT', 0, sweepLimit)
  if #due > 0 then
    local qf = {}
    for i, seq in ipairs(due) do qf[i] = 'q' .. seq end
    local recs = redis.call('HMGET', H, unpack(qf))
    local names, index, drops = {}, {}, {}
    local gone, later, kv = {}, {}, {}
    for i, rec in ipairs(recs) do
      if rec and string.byte(rec, 25) == 0 then
        for _, f in ipairs(resFields(rec)) do
          if not index[f] then
            names[#names + 1] = f
            index[f] = #names
          end
        end
      end
    end
    local vals = {}
    if #names > 0 then vals = redis.call('HMGET', H, unpack(names)) end
    local budgets = {}
    for i, rec in ipairs(recs) do
      if not rec or string.byte(rec, 25) == 1 then
        gone[#gone + 1] = due[i]
        if rec then drops[#drops + 1] = qf[i] end
      else
        local made, e, cost = unpackS('<ddd', rec)
        for _, f in ipairs(resFields(rec)) do
          local j = index[f]
          if string.byte(f) == 99 then -- 'c': a slot
            vals[j] = max((tonumber(vals[j]) or 0) - 1, 0)
          elseif vals[j] then
            local b = budgets[j] or readBudget(vals[j], 0)
            budgets[j] = b
            local p = periodOf(b, made)
            if p then b[p + 1] = max(b[p + 1] - cost, 0) end
          end
        end
        kv[#kv + 1] = qf[i]
        kv[#kv + 1] = string.sub(rec, 1, 24) .. '\1' .. string.sub(rec, 26)
        later[#later + 1] = int(e + grace)
        later[#later + 1] = due[i]
      end
    end
    for j, f in ipairs(names) do
      if budgets[j] then
        kv[#kv + 1], kv[#kv + 2] = f, packBudget(budgets[j])
      elseif string.byte(f) == 99 then
        kv[#kv + 1], kv[#kv + 2] = f, int(vals[j])
      end
    end
    hset(kv)
    if #drops > 0 then redis.call('HDEL', H, unpack(drops)) end
    if #gone > 0 then redis.call('ZREM', Z, unpack(gone)) end
    if #later > 0 then redis.call('ZADD', Z, unpack(later)) end
  end
  local first = redis.call('ZRANGE', Z, 0, 0, 'WITHSCORES')
  if #first == 0 or first[1] == '~' then return false end
  return tonumber(first[2])
end

-- swept sweeps when '_n' (n, as read) is due, writing the new '_n', and
-- reports whether it did.
local function swept(n)
  n = tonumber(n)
  if not n or now < n then return false end
  local next = sweep()
  if next then
    redis.call('HSET', H, '_n', int(next))
  else
    redis.call('HDEL', H, '_n')
  end
  return true
end
