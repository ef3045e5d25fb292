-- Look up a place. ARGV[1] epoch, ARGV[2] request id (16 raw bytes). Returns {} or {position, entry_time}.
check_identity()
local p = redis.call('HGET', KEYS[2], ARGV[2])
if not p then return {} end
p = tonumber(p)
return {p, entry_time(p)}
