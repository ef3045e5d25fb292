-- Join the queue for several visitors at once (joins that arrived together): each gets what
-- enqueue.lua would give it alone, in the order given, with one identity check and one round trip.
-- ARGV[1] epoch, ARGV[2] the number of joins n, then n triples: request id hash (16 bytes,
-- idp.queue.at_rest), now (epoch s), deadline in ms of this server's clock (0: none; see enqueue.lua).
-- Joins with an idempotency key never come here. Returns n triples {status, position, entry_time}:
-- status 0 a new place, 1 past its deadline (no place: its client was answered 503), 2 the positions the
-- database reserved are used up (no place; this join and every later one in the call: the caller reserves
-- more and sends those again). Error IDPLOST (common.lua) when the identity check fails: nothing ran.
check_identity()
local n = tonumber(ARGV[2])
local clock = nil
local out = {}
local blocked = false
for i = 0, n - 1 do
  local rid = ARGV[3 + 3 * i]
  local now = tonumber(ARGV[4 + 3 * i])
  local deadline = tonumber(ARGV[5 + 3 * i])
  if deadline > 0 and clock == nil then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local status = 0
  if deadline > 0 and clock > deadline then
    status = 1
  else
    if not blocked and positions_used_up() then
      blocked = true
    end
    if blocked then status = 2 end
  end
  if status ~= 0 then
    out[#out + 1] = status
    out[#out + 1] = 0
    out[#out + 1] = 0
  else
    local pos, t = new_place(rid, now)
    out[#out + 1] = 0
    out[#out + 1] = pos
    out[#out + 1] = t
  end
end
return out
