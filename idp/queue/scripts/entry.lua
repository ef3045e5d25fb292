-- Look up a place. ARGV[1] request id (16 raw bytes). Returns {} or {position, entry_time}.
local p = redis.call('HGET', KEYS[2], ARGV[1])
if not p then return {} end
p = tonumber(p)
return {p, entry_time(p)}
