-- Raise the serving counter and record when. ARGV[1] increment (positive), ARGV[2] now.
-- Returns the new serving counter. HINCRBY refuses to overflow int64.
local serving = redis.call('HINCRBY', KEYS[1], 'serving', ARGV[1])
record_issue(serving, tonumber(ARGV[2]))
return serving
