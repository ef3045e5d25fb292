-- Admit waiting visitors up to a cap: serving = min(cap, queue, serving + by), at most once per mark.
-- KEYS[1..6] as in common.lua; KEYS[7] applied marks (as in increment_once.lua).
-- ARGV[1] cap (highest serving value allowed), ARGV[2] most to admit, ARGV[3] now, ARGV[4] mark or '',
-- ARGV[5] seconds to remember a mark.
-- Returns {serving counter, number admitted now}.
local serving = num(redis.call('HGET', KEYS[1], 'serving'))
local mark = ARGV[4]
if mark ~= '' and redis.call('ZSCORE', KEYS[7], mark) then return {serving, 0} end
local target = serving + tonumber(ARGV[2])
local cap = tonumber(ARGV[1])
if cap < target then target = cap end
local queue = num(redis.call('HGET', KEYS[1], 'queue'))
if queue < target then target = queue end
if target <= serving then return {serving, 0} end
redis.call('HSET', KEYS[1], 'serving', target)
local now = tonumber(ARGV[3])
record_issue(target, now)
if mark ~= '' then
  redis.call('ZADD', KEYS[7], now, mark)
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - tonumber(ARGV[5])))
end
return {target, target - serving}
