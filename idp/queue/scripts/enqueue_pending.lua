-- Join an event's pre-queue: a request id and its public entry id, no position until the draw.
-- KEYS[1..6] as in common.lua; KEYS[7] pending hash (16-byte request id -> "entry_id:joined_at").
-- ARGV[1] epoch, ARGV[2] request id (16 raw bytes), ARGV[3] entry id (hex), ARGV[4] now,
-- ARGV[5] idempotency key or ''.
-- Returns {0} once the event has been drawn (the caller joins the queue instead), else
-- {1, request_id, "entry_id:joined_at"} (an earlier entry when the idempotency key was seen before).
check_identity()
if redis.call('HEXISTS', KEYS[1], 'drawn_at') == 1 then return {0} end
local rid = ARGV[2]
local ikey = ARGV[5]
if ikey ~= '' then
  local existing = redis.call('HGET', KEYS[6], ikey)
  if existing then
    local found = redis.call('HGET', KEYS[7], existing)
    if found then return {1, existing, found} end
  end
end
local value = ARGV[3] .. ':' .. ARGV[4]
redis.call('HSET', KEYS[7], rid, value)
if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, rid) end
return {1, rid, value}
