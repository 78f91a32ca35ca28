-- Idempotency entries kept beside a Tag's admission state, for the Once
-- functions: reserve or settle (wrapped as a function named op, returning
-- its reply) followed by this file. The entry is KEYS[#KEYS], a string:
-- struct.pack('<c1dI4', state ('p' in progress, 'c' completed), its
-- expiry (ms, the caller's clock; besides its Redis expiry), the
-- fingerprint's length), the fingerprint, struct.pack('<I4', the
-- in-progress marker's token's length), the token, and, once completed,
-- the record (internal/idemrecord).
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

local function entry(state, e, fp, token, rec)
  return pack('<c1dI4', state, e, #fp) .. fp .. pack('<I4', #token) .. token .. rec
end

-- readEntry returns the state, fingerprint and token of entry v if it is
-- live, and the position its record starts at; nil for none.
local function readEntry(v)
  if not v then return nil end
  local state, e, nf, pos = unpackS('<c1dI4', v)
  if e <= now then return nil end
  local fp = string.sub(v, pos, pos + nf - 1)
  local nt
  nt, pos = unpackS('<I4', v, pos + nf)
  return state, fp, string.sub(v, pos, pos + nt - 1), pos + nt
end

if once == 'reserve' then
  local fp, token, lease = ARGV[na - 2], ARGV[na - 1], tonumber(ARGV[na])
  local v = redis.call('GET', ik)
  local state, kept, _, at = readEntry(v)
  if state then
    if kept ~= fp then return {4} end
    if state == 'p' then return {2} end
    return {3, string.sub(v, at)}
  end
  local out = op()
  if out[1] == 1 then
    redis.call('SET', ik, entry('p', now + lease, fp, token, ''), 'PX', int(lease))
  end
  table.insert(out, 1, 1)
  return out
end

local token, how, rec, ikeep = ARGV[na - 3], ARGV[na - 2], ARGV[na - 1], tonumber(ARGV[na])
local out = op()
local state, fp, held = readEntry(redis.call('GET', ik))
if not (state == 'p' and held == token) then return {out[1], 0} end
if how == 'a' then
  redis.call('DEL', ik)
else
  redis.call('SET', ik, entry('c', now + ikeep, fp, '', rec), 'PX', int(ikeep))
end
return {out[1], 1}
