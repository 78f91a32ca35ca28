-- One rate-limit decision: read the bucket, decide, write it back.
--
-- This is a line-by-line transcription of Decide in
-- internal/bucket/bucket.go for OpAllow, the one operation of
-- ratelimit.Limiter; read that first, and change both together. Every value
-- stays below 2^53, where Lua's numbers (float64) are exact integers, and
-- floor/ceil of a quotient of such values is exact.
--
-- KEYS[1]  the bucket: a string of three little-endian float64s,
--          struct.pack('<ddd', balance (scaled), its millisecond, the scale
--          of one unit when the balance was written); absent is full
-- ARGV     n, unit, rate, burst, and now (ms) only when the caller sets
--          the clock: without it the script reads the Redis server's clock
-- returns  {allowed (0/1), remaining, reset after (ms), retry after (ms)}
--
-- A decision costs three commands (TIME, GET, SET ... PX), two when it
-- writes nothing (a check, a denial) and one less with a caller's clock.
-- The bucket is stored as raw float64s (struct is built into Redis's Lua),
-- which hold its integers exactly without formatting or parsing them. A
-- change of this format must change keyVersion in store.go too, so that no
-- version reads another's buckets.

-- Redis before 5 must be told to replicate the writes rather than the script
-- (which reads TIME); from 7 on this is the only mode and a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local key = KEYS[1]
local n = tonumber(ARGV[1])
local unit = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local now = tonumber(ARGV[5])

if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

local full = burst * unit
local bal, ts = full, now
local s = redis.call('GET', key)
if s then
  local su
  bal, ts, su = struct.unpack('<ddd', s)
  if su ~= unit then
    -- The policy for this key changed: carry whole units over.
    bal = min(max(floor(bal / su), -burst), burst) * unit
  end
  bal = min(bal, full)
  if now > ts then
    -- Refill, comparing before multiplying so that a long idle key cannot
    -- overflow.
    local need = full - bal
    if now - ts >= ceil(need / rate) then
      bal = full
    else
      bal = bal + (now - ts) * rate
    end
    ts = now
  end
end

-- lag > 0 when the stored state is ahead of this caller's clock; waits are
-- measured from the caller's now: lag + ceil(deficit / rate).
local lag = ts - now

local allowed, write, retry = 0, false, 0
if n > burst then
  -- Never possible: hint the time a whole bucket takes to refill.
  retry = lag + ceil(full / rate)
elseif n == 0 then
  if bal >= unit then allowed = 1 else retry = lag + ceil((unit - bal) / rate) end
elseif bal >= n * unit then
  bal = bal - n * unit
  allowed, write = 1, true
else
  retry = lag + ceil((n * unit - bal) / rate)
end

local remaining = floor(max(bal, 0) / unit)
local reset = 0
if bal < full then reset = lag + ceil((full - bal) / rate) end

if write then
  -- Keep the key until the bucket is full again (an absent key is a full
  -- bucket), plus a second for differences between the clocks that write
  -- and expire it. redis.call passes a number on as "%.17g" (as an integer
  -- from Redis 7.2), which spells every integer below 2^53 exactly.
  local ttl = ceil((full - bal) / rate) + max(lag, 0) + 1000
  redis.call('SET', key, struct.pack('<ddd', bal, ts, unit), 'PX', ttl)
end

return {allowed, remaining, reset, retry}
