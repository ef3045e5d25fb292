-- Look up a place. ARGV[1] epoch, ARGV[2] request id hash, ARGV[3] raw request id or '' (see find_place).
-- Returns {} or {position, entry_time}.
check_identity()
local p = find_place()
if not p then return {} end
p = tonumber(p)
return {p, entry_time(p)}
