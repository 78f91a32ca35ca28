-- The start of every admission script: the arguments all of them share, the
-- token bucket (a transcription of internal/bucket), and the budget helpers.
-- Each operation's script is this file followed by the operation's own.
--
-- Keys of one Tag, all in one Cluster slot (P is Prefix .. '{' .. tag .. '}:'):
--   P .. 'seq'                    counter issuing reservation seqs
--   P .. 'res:' .. seq            a reservation: struct.pack('<ddd', the
--                                 millisecond it was made, its expiry, its
--                                 Cost)
--   P .. 'rate:' .. key           a token bucket (see decide)
--   P .. 'slot:' .. key           zset: seqs of the reservations holding a
--                                 slot -> their expiry (ms)
--   P .. 'budget:' .. B           hash: a budget in one period: s (spent),
--                                 h (held by live holds), hx (the latest
--                                 expiry of a hold made in it)
--   P .. 'holds:' .. B            zset: the budget's holds, seq .. ':' ..
--                                 amount -> expiry (ms)
-- where B is kind:id:period:start (Unix seconds; 0 for a lifetime budget).
--
-- Every number is an integer below 2^53, exact in Lua's float64 numbers:
-- bucket values by internal/bucket's MaxScaled, amounts because Micros are
-- at most 2^50 (see store.go for the bound on spent). Numbers written to
-- Redis go through int ('%d'), which spells them exactly.
--
-- ARGV[1]  now (ms), the caller's clock
-- ARGV[2]  TTL of a reservation (ms)
-- ARGV[3]  settle grace (ms)
-- ARGV[4]  margin (ms) every key outlives its last use by

local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])

local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

local function int(n) return string.format('%d', n) end

-- decide is bucket.Decide, line by line, for OpAllow (refund false) and
-- OpRefund (refund true) on the bucket at key, whose value is s (false for
-- a missing key: a full bucket). It returns the decision {allowed (0/1),
-- remaining, reset after (ms), retry after (ms)} and a function that writes
-- the new state, or nil when there is nothing to write.
local function decide(key, s, refund, n, unit, rate, burst)
  local full = burst * unit
  local bal, ts = full, now
  if s then
    local su
    bal, ts, su = struct.unpack('<ddd', s)
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
  local save = nil
  if write then
    -- Keep the key until the bucket is full again (a missing key is a full
    -- bucket), plus a second for differences between the clocks that write
    -- and expire it.
    local pttl = ceil((full - bal) / rate) + max(lag, 0) + 1000
    save = function() redis.call('SET', key, struct.pack('<ddd', bal, ts, unit), 'PX', int(pttl)) end
  end
  return {allowed, remaining, reset, retry}, save
end

-- fits is the rule of budget.Ledger: an amount fits while spent + held +
-- amount <= limit; 0 fits while the budget is not exhausted.
local function fits(limit, s, h, amount)
  if amount == 0 then return s + h < limit end
  return s + h + amount <= limit
end

-- readBudget returns the spent, held and latest hold expiry of the budget
-- in hash b, whose holds are in zset z, after ending the holds that expired
-- by now. Each hold is removed once, by this sweep or by its Settle, so the
-- work is bounded by the holds made; when every hold made in the budget has
-- expired (hx <= now), none is read at all.
local function readBudget(b, z)
  local v = redis.call('HMGET', b, 's', 'h', 'hx')
  -- (h is below 0 only if the hash was lost while its holds were not.)
  local s, h, hx = tonumber(v[1]) or 0, max(tonumber(v[2]) or 0, 0), tonumber(v[3]) or 0
  if hx <= now then
    if hx ~= 0 then
      redis.call('DEL', z)
      redis.call('HSET', b, 'h', 0, 'hx', 0)
    end
    return s, 0, 0
  end
  local due = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #due > 0 then
    local gone = 0
    for _, m in ipairs(due) do gone = gone + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    h = max(h - gone, 0)
    redis.call('HSET', b, 'h', int(h))
  end
  return s, h, hx
end

-- keepBudget sets the TTL of budget hash b whose period ends at pend (ms; 0
-- for a lifetime budget): until its period has ended and every reservation
-- made now could no longer be settled, plus the margin. A lifetime budget
-- with money spent is kept for good.
local function keepBudget(b, pend, s)
  if pend == 0 and s > 0 then
    redis.call('PERSIST', b)
  else
    redis.call('PEXPIRE', b, int(max(pend, now + ttl) + grace + margin - now))
  end
end
