-- A place's state, and optionally claim it (mark its token issued, once).
-- ARGV[1] request id (16 raw bytes), ARGV[2] now, ARGV[3] expiry enabled (1/0), ARGV[4] period,
-- ARGV[5] claim (1/0)
-- Returns {state, position, entry_time, serving, admitted_at, expires_in, first_claim}
-- state: 0 unknown, 1 waiting, 2 admitted, 3 claimed, 4 expired; -1 stands for "none".
local p = redis.call('HGET', KEYS[2], ARGV[1])
if not p then return {0, 0, 0, 0, -1, -1, 0} end
p = tonumber(p)
local now = tonumber(ARGV[2])
local enabled = ARGV[3] == '1'
local period = tonumber(ARGV[4])
local et = entry_time(p)
local serving = num(redis.call('HGET', KEYS[1], 'serving'))
if p > serving then return {1, p, et, serving, -1, -1, 0} end
local adm = admitted_at(p)
if redis.call('GETBIT', KEYS[5], p) == 1 then return {3, p, et, serving, adm, -1, 0} end
local expires_in = -1
if enabled then
  local max_expired = num(redis.call('HGET', KEYS[1], 'max_expired'))
  if p <= max_expired or now - adm > period then return {4, p, et, serving, adm, -1, 0} end
  expires_in = period - (now - adm)
end
if ARGV[5] == '1' then
  redis.call('SETBIT', KEYS[5], p, 1)
  redis.call('HINCRBY', KEYS[1], 'tokens', 1)
  return {3, p, et, serving, adm, -1, 1}
end
return {2, p, et, serving, adm, expires_in, 0}
