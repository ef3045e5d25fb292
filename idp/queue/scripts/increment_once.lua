-- Raise the serving counter at most once per mark (idempotent automatic increments).
-- KEYS[1..6] as in common.lua; KEYS[7] applied marks (sorted set: member = mark, score = applied time).
-- ARGV[1] epoch, ARGV[2] increment (positive), ARGV[3] now, ARGV[4] mark, ARGV[5] seconds to remember a mark.
-- Returns {serving counter (string), 1 if applied now or 0 if the mark was applied before}.
check_identity()
if redis.call('ZSCORE', KEYS[7], ARGV[4]) then
  return {redis.call('HGET', KEYS[1], 'serving') or '0', 0}
end
local serving = advance(ARGV[2])
record_issue(serving, tonumber(ARGV[3]))
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[5])))
return {serving, 1}
