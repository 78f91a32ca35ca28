-- One idempotency operation on one entry, atomically.
--
-- KEYS[1]  the entry: a hash with
--            s  state: 'p' (in progress) or 'c' (completed)
--            f  the fingerprint given to Begin
--            t  the in-progress marker's token (absent once completed)
--            r  the encoded record (completed only)
--            e  expiry, ms, by the caller's clock (only when the Store has
--               a Config.Now; otherwise Redis's own expiry is the only one)
--          and a Redis expiry (PEXPIRE) of the lease or the retention, so
--          that it disappears on its own whichever clock is used.
-- ARGV[1]  op: 'begin', 'complete' or 'abort'
-- ARGV[2]  now, ms by the caller's clock, or -1 to rely on Redis's expiry
--
-- begin     ARGV[3] fingerprint, ARGV[4] token, ARGV[5] lease ms,
--           ARGV[6] expiry ms (or -1)
--           returns {1} started, {2} in progress, {3, record} completed,
--           {4} mismatch
-- complete  ARGV[3] token, ARGV[4] record, ARGV[5] ttl ms, ARGV[6] expiry ms
--           (or -1); returns 1 done, 0 lease lost
-- abort     ARGV[3] token; returns 1 done, 0 lease lost
--
-- The script reads no clock and writes only KEYS[1], so it replicates as is.

local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])

-- live reports whether an entry with expiry field e is alive at now.
local function live(e)
  return now < 0 or not e or tonumber(e) > now
end

-- held reports whether the entry is a live marker with token.
local function held(token)
  local v = redis.call('HMGET', key, 's', 't', 'e')
  return v[1] == 'p' and v[2] == token and live(v[3])
end

if op == 'begin' then
  local v = redis.call('HMGET', key, 's', 'f', 'e')
  if v[1] and live(v[3]) then
    if v[2] ~= ARGV[3] then return {4} end
    if v[1] == 'p' then return {2} end
    return {3, redis.call('HGET', key, 'r')}
  end
  redis.call('DEL', key)
  if ARGV[6] == '-1' then
    redis.call('HSET', key, 's', 'p', 'f', ARGV[3], 't', ARGV[4])
  else
    redis.call('HSET', key, 's', 'p', 'f', ARGV[3], 't', ARGV[4], 'e', ARGV[6])
  end
  redis.call('PEXPIRE', key, ARGV[5])
  return {1}
end

if op == 'complete' then
  if not held(ARGV[3]) then return 0 end
  redis.call('HDEL', key, 't')
  if ARGV[6] == '-1' then
    redis.call('HSET', key, 's', 'c', 'r', ARGV[4])
  else
    redis.call('HSET', key, 's', 'c', 'r', ARGV[4], 'e', ARGV[6])
  end
  redis.call('PEXPIRE', key, ARGV[5])
  return 1
end

if op == 'abort' then
  if not held(ARGV[3]) then return 0 end
  redis.call('DEL', key)
  return 1
end

return redis.error_reply('unknown op ' .. tostring(op))
