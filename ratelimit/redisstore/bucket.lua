-- One rate-limit decision: read the bucket, decide, write it back.
--
-- This is a line-by-line transcription of Decide in
-- ratelimit/internal/bucket/bucket.go; read that first, and change both
-- together. Every value stays below 2^53, where Lua's numbers (float64) are
-- exact integers, and floor/ceil of a quotient of such values is exact.
--
-- KEYS[1]  the bucket: a hash with b (balance, scaled), t (its millisecond)
--          and u (the scale of one unit when b was written)
-- ARGV     op ("allow" or "charge"), n, unit, rate, burst, now (ms, or -1
--          for the Redis server's clock), ttl margin (ms)
-- returns  {allowed (0/1), remaining, reset after (ms), retry after (ms)}

-- Redis before 5 must be told to replicate the writes rather than the script
-- (which reads TIME); from 7 on this is the only mode and a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local key = KEYS[1]
local op = ARGV[1]
local n = tonumber(ARGV[2])
local unit = tonumber(ARGV[3])
local rate = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
local margin = tonumber(ARGV[7])

if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ceildiv(a, b) return math.ceil(a / b) end

local full = burst * unit
local bal, ts = full, now
local s = redis.call('HMGET', key, 'b', 't', 'u')
local su = tonumber(s[3])
if s[1] and s[2] and su and su > 0 then
  bal, ts = tonumber(s[1]), tonumber(s[2])
  if su ~= unit then
    -- The policy for this key changed: carry whole units over.
    bal = math.min(math.max(math.floor(bal / su), -burst), burst) * unit
  end
  bal = math.min(bal, full)
  if now > ts then
    local need = full - bal
    if now - ts >= ceildiv(need, rate) then
      bal = full
    else
      bal = bal + (now - ts) * rate
    end
    ts = now
  end
end

local lag = ts - now
local function wait(deficit) return lag + ceildiv(deficit, rate) end

local allowed, write, retry = 0, false, 0
if op == 'allow' then
  if n > burst then
    retry = wait(full)
  elseif n == 0 then
    if bal >= unit then allowed = 1 else retry = wait(unit - bal) end
  elseif bal >= n * unit then
    bal = bal - n * unit
    allowed, write = 1, true
  else
    retry = wait(n * unit - bal)
  end
else
  if n > 0 then
    if n >= 2 * burst then
      bal = -full
    else
      bal = math.max(bal - n * unit, -full)
    end
    write = true
  end
  if bal >= unit then allowed = 1 else retry = wait(unit - bal) end
end

local remaining = math.floor(math.max(bal, 0) / unit)
local reset = 0
if bal < full then reset = wait(full - bal) end

if write then
  -- Pass integers as strings: tostring of a large number could use an
  -- exponent and lose digits.
  redis.call('HSET', key, 'b', string.format('%d', bal), 't', string.format('%d', ts), 'u', string.format('%d', unit))
  -- Keep the key until the bucket is full again (an absent key is a full
  -- bucket), plus a margin for clock differences.
  redis.call('PEXPIRE', key, string.format('%d', ceildiv(full - bal, rate) + math.max(lag, 0) + margin))
end

return {allowed, remaining, reset, retry}
