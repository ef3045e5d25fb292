-- Raise the serving counter and record when. ARGV[1] epoch, ARGV[2] increment (positive), ARGV[3] now.
-- Returns the new serving counter (a string, exact). HINCRBY refuses to overflow int64.
check_identity()
local serving = advance(ARGV[2])
record_issue(serving, tonumber(ARGV[3]))
return serving
