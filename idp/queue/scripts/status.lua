-- A place's state, and optionally claim it (mark its token issued, once).
-- ARGV[1] epoch, ARGV[2] request id hash, ARGV[3] raw request id or '' (see find_place), ARGV[4] now,
-- ARGV[5] expiry enabled (1/0), ARGV[6] period, ARGV[7] claim (1/0)
-- Returns {state, position, entry_time, serving (string), admitted_at, expires_in, first_claim}
-- state: 0 unknown, 1 waiting, 2 admitted, 3 claimed, 4 expired; -1 stands for "none".
check_identity()
local p = find_place()
if not p then return {0, 0, 0, '0', -1, -1, 0} end
p = tonumber(p)
local now = tonumber(ARGV[4])
local enabled = ARGV[5] == '1'
local period = tonumber(ARGV[6])
local et = entry_time(p)
local serving_s = redis.call('HGET', KEYS[1], 'serving') or '0'
local serving = tonumber(serving_s)
if p > serving then return {1, p, et, serving_s, -1, -1, 0} end
local adm = admitted_at(p)
if redis.call('GETBIT', KEYS[5], p) == 1 then return {3, p, et, serving_s, adm, -1, 0} end
local expires_in = -1
if enabled then
  local max_expired = num(redis.call('HGET', KEYS[1], 'max_expired'))
  if p <= max_expired or now - adm > period then return {4, p, et, serving_s, adm, -1, 0} end
  expires_in = period - (now - adm)
end
if ARGV[7] == '1' then
  redis.call('SETBIT', KEYS[5], p, 1)
  redis.call('HINCRBY', KEYS[1], 'tokens', 1)
  return {3, p, et, serving_s, adm, -1, 1}
end
return {2, p, et, serving_s, adm, expires_in, 0}
