-- Join the queue: the next position, an entry time that never goes backwards.
-- ARGV[1] request id (16 raw bytes), ARGV[2] now (epoch s), ARGV[3] idempotency key or ''
-- Returns {request_id, position, entry_time}.
local rid = ARGV[1]
local now = tonumber(ARGV[2])
local ikey = ARGV[3]
if ikey ~= '' then
  local existing = redis.call('HGET', KEYS[6], ikey)
  if existing then
    local p = tonumber(redis.call('HGET', KEYS[2], existing))
    if p then return {existing, p, entry_time(p)} end
  end
end
local pos = redis.call('HINCRBY', KEYS[1], 'queue', 1)
local last = num(redis.call('HGET', KEYS[1], 'last_time'))
local t = now
if last > t then t = last end
if t > last or pos == 1 then
  redis.call('ZADD', KEYS[3], pos, t)
  redis.call('HSET', KEYS[1], 'last_time', t)
end
redis.call('HSET', KEYS[2], rid, pos)
if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, rid) end
return {rid, pos, t}
