-- Admit waiting visitors up to a cap: serving moves on by min(by, cap - serving, queue - serving) held
-- positions (lost ranges are skipped, as in advance()), at most once per mark.
-- KEYS[1..6] as in common.lua; KEYS[7] applied marks (as in increment_once.lua).
-- ARGV[1] epoch, ARGV[2] cap (highest serving value allowed), ARGV[3] most to admit, ARGV[4] now,
-- ARGV[5] mark or '', ARGV[6] seconds to remember a mark.
-- Returns {serving counter (string), number admitted now}.
check_identity()
local serving = num(redis.call('HGET', KEYS[1], 'serving'))
local mark = ARGV[5]
if mark ~= '' and redis.call('ZSCORE', KEYS[7], mark) then
  return {redis.call('HGET', KEYS[1], 'serving') or '0', 0}
end
local n = tonumber(ARGV[3])
local room = tonumber(ARGV[2]) - serving
if room < n then n = room end
local waiting = num(redis.call('HGET', KEYS[1], 'queue')) - serving
if waiting < n then n = waiting end
if n <= 0 then return {redis.call('HGET', KEYS[1], 'serving') or '0', 0} end
local now = tonumber(ARGV[4])
local moved = advance(n)
record_issue(moved, now)
if mark ~= '' then
  redis.call('ZADD', KEYS[7], now, mark)
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - tonumber(ARGV[6])))
end
return {moved, n}
