-- Idempotency entries kept beside a Tag's admission state, for the Once
-- scripts: reserve or settle (wrapped as a function named op, returning
-- its reply) followed by this file. The entry is KEYS[#KEYS], a hash as the
-- idempotency store keeps it:
--   s  'p' (in progress) or 'c' (completed)
--   f  the fingerprint
--   t  the in-progress marker's token
--   r  the record (internal/idemrecord), once completed
--   e  its expiry (ms, the caller's clock), besides its Redis expiry
--
-- reserve: ARGV[#ARGV-2..] fingerprint, token, lease (ms)
--   returns {4} mismatch, {2} in progress, {3, record} completed, taking
--   nothing; else {1, the reserve reply...}, the entry claimed only when
--   the reservation was allowed.
-- settle: ARGV[#ARGV-3..] token, 'c' (complete) or 'a' (abort), record,
--   ttl (ms)
--   returns {the settle reply's value, 1 if the entry was ended, 0 if it
--   was no longer held with token}

local ik = KEYS[#KEYS]
local na = #ARGV

local function live(e) return not e or tonumber(e) > now end

if once == 'reserve' then
  local fp, token, lease = ARGV[na - 2], ARGV[na - 1], tonumber(ARGV[na])
  local v = redis.call('HMGET', ik, 's', 'f', 'e')
  if v[1] and live(v[3]) then
    if v[2] ~= fp then return {4} end
    if v[1] == 'p' then return {2} end
    return {3, redis.call('HGET', ik, 'r')}
  end
  local out = op()
  if out[1] == 1 then
    -- An entry past its expiry (e) that Redis has not yet removed.
    if v[1] then redis.call('DEL', ik) end
    redis.call('HSET', ik, 's', 'p', 'f', fp, 't', token, 'e', int(now + lease))
    redis.call('PEXPIRE', ik, int(lease))
  end
  table.insert(out, 1, 1)
  return out
end

local token, how, rec, ikeep = ARGV[na - 3], ARGV[na - 2], ARGV[na - 1], tonumber(ARGV[na])
local out = op()
local v = redis.call('HMGET', ik, 's', 't', 'e')
if not (v[1] == 'p' and v[2] == token and live(v[3])) then return {out[1], 0} end
if how == 'a' then
  redis.call('DEL', ik)
else
  -- (Its token no longer matters: only an entry in progress has one.)
  redis.call('HSET', ik, 's', 'c', 'r', rec, 'e', int(now + ikeep))
  redis.call('PEXPIRE', ik, int(ikeep))
end
return {out[1], 1}
