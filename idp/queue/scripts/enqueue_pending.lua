-- Join an event's pre-queue: a request id and its public entry id, no position until the draw.
-- KEYS[1..6] as in common.lua; KEYS[7] pending hash (16-byte request id hash -> "entry_id:joined_at").
-- ARGV[1] epoch, ARGV[2] request id hash (16 bytes), ARGV[3] entry id (hex), ARGV[4] now,
-- ARGV[5] idempotency key or '', ARGV[6] what the idempotency hash keeps for the key (as in enqueue.lua).
-- Returns {0} once the event has been drawn (the caller joins the queue instead), else
-- {1, '', "entry_id:joined_at"} for a new entry, {2, kept, "entry_id:joined_at"} for the entry an earlier
-- join with the idempotency key made (kept: what the idempotency hash holds).
check_identity()
if redis.call('HEXISTS', KEYS[1], 'drawn_at') == 1 then return {0} end
local rid = ARGV[2]
local ikey = ARGV[5]
if ikey ~= '' then
  local existing = redis.call('HGET', KEYS[6], ikey)
  if existing then
    local found = redis.call('HGET', KEYS[7], string.sub(existing, 1, 16))
    if found then return {2, existing, found} end
  end
end
local value = ARGV[3] .. ':' .. ARGV[4]
redis.call('HSET', KEYS[7], rid, value)
if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, ARGV[6]) end
return {1, '', value}
