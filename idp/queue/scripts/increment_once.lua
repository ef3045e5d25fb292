-- Raise the serving counter at most once per mark (idempotent automatic increments).
-- KEYS[1..6] as in common.lua; KEYS[7] applied marks (sorted set: member = mark, score = applied time).
-- ARGV[1] increment (positive), ARGV[2] now, ARGV[3] mark, ARGV[4] seconds to remember a mark.
-- Returns {serving counter, 1 if applied now or 0 if the mark was applied before}.
if redis.call('ZSCORE', KEYS[7], ARGV[3]) then
  return {num(redis.call('HGET', KEYS[1], 'serving')), 0}
end
local serving = redis.call('HINCRBY', KEYS[1], 'serving', ARGV[1])
record_issue(serving, tonumber(ARGV[2]))
redis.call('ZADD', KEYS[7], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[4])))
return {serving, 1}
