-- Join an event's pre-queue: a request id and its public entry id, no position until the draw.
-- KEYS[1..6] as in common.lua; KEYS[7] pending hash (16-byte request id -> "entry_id:joined_at").
-- ARGV[1] request id (16 raw bytes), ARGV[2] entry id (hex), ARGV[3] now, ARGV[4] idempotency key or ''
-- Returns {0} once the event has been drawn (the caller joins the queue instead), else
-- {1, request_id, "entry_id:joined_at"} (an earlier entry when the idempotency key was seen before).
if redis.call('HEXISTS', KEYS[1], 'drawn_at') == 1 then return {0} end
local rid = ARGV[1]
local ikey = ARGV[4]
if ikey ~= '' then
  local existing = redis.call('HGET', KEYS[6], ikey)
  if existing then
    local found = redis.call('HGET', KEYS[7], existing)
    if found then return {1, existing, found} end
  end
end
local value = ARGV[2] .. ':' .. ARGV[3]
redis.call('HSET', KEYS[7], rid, value)
if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, rid) end
return {1, rid, value}
