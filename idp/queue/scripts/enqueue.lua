-- Join the queue: the next position, an entry time that never goes backwards.
-- ARGV[1] epoch, ARGV[2] request id hash (16 bytes, idp.queue.at_rest), ARGV[3] now (epoch s),
-- ARGV[4] idempotency key or '', ARGV[5] deadline in ms of this server's clock (0: none): a join that runs
-- later (a paused server) was already answered 503 and is refused, so it never leaves a place nobody knows
-- about. ARGV[6] what the idempotency hash keeps for the key: the hash then the sealed request id (32 bytes).
-- Returns {0, '', position, entry_time} for a new place, {1, kept, position, entry_time} for the place an
-- earlier join with the key made (kept: what the idempotency hash holds; 16 raw request id bytes when an
-- earlier release wrote it); error IDPBLOCK when the positions the database reserved are used up (the caller
-- reserves more and calls again), IDPLATE past the deadline, IDPLOST (common.lua).
check_identity()
local rid = ARGV[2]
local now = tonumber(ARGV[3])
local ikey = ARGV[4]
local deadline = tonumber(ARGV[5])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then
    return redis.error_reply('IDPLATE')
  end
end
if ikey ~= '' then
  local existing = redis.call('HGET', KEYS[6], ikey)
  if existing then
    local p = tonumber(redis.call('HGET', KEYS[2], string.sub(existing, 1, 16)))
    if p then return {1, existing, p, entry_time(p)} end
  end
end
if positions_used_up() then
  return redis.error_reply('IDPBLOCK')
end
local pos, t = new_place(rid, now)
if ikey ~= '' then redis.call('HSET', KEYS[6], ikey, ARGV[6]) end
return {0, '', pos, t}
