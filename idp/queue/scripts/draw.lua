-- Draw an event's pre-queue: every pending entry gets a position, in the given order, at once; once.
-- KEYS[1..6] as in common.lua; KEYS[7] pending hash (see enqueue_pending.lua).
-- ARGV[1] epoch, ARGV[2] now, ARGV[3] number of entries P, ARGV[4..P+3] their fields in the pending hash
-- in drawn order.
-- Returns {1} drawn now, {2} drawn before (nothing changed), {3} the entries changed since they were
-- read (nothing changed; read them again and retry), {4, needed} the positions the database reserved
-- do not reach `needed` (nothing changed; reserve more and retry).
check_identity()
if redis.call('HEXISTS', KEYS[1], 'drawn_at') == 1 then return {2} end
local count = tonumber(ARGV[3])
if redis.call('HLEN', KEYS[7]) ~= count then return {3} end
for i = 1, count do
  if redis.call('HEXISTS', KEYS[7], ARGV[i + 3]) == 0 then return {3} end
end
local start = num(redis.call('HGET', KEYS[1], 'queue'))
if count > 0 and start + count > num(redis.call('HGET', KEYS[1], 'limit')) then
  return {4, start + count}
end
local now = tonumber(ARGV[2])
local last = num(redis.call('HGET', KEYS[1], 'last_time'))
local t = now
if last > t then t = last end
for i = 1, count do
  redis.call('HSET', KEYS[2], ARGV[i + 3], start + i)
end
if count > 0 then
  redis.call('HSET', KEYS[1], 'queue', start + count)
  if t > last or redis.call('ZCARD', KEYS[3]) == 0 then
    redis.call('ZADD', KEYS[3], start + 1, t)
    redis.call('HSET', KEYS[1], 'last_time', t)
  end
end
redis.call('HSET', KEYS[1], 'drawn_at', t, 'draw_first', start + 1)
return {1}
