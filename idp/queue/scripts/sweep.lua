-- Expiry sweep: find the end of the expired prefix of admitted positions by binary search,
-- count its unclaimed positions, and (optionally) move the serving counter on by that many.
-- ARGV[1] now, ARGV[2] period, ARGV[3] incr_serving_on_expiry (1/0)
-- Returns {expired_unclaimed, max_expired, serving, previous_serving}
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local m = num(redis.call('HGET', KEYS[1], 'max_expired'))
local serving = num(redis.call('HGET', KEYS[1], 'serving'))
local queue = num(redis.call('HGET', KEYS[1], 'queue'))
local limit = serving
if queue < limit then limit = queue end
local function expired(pos) return now - admitted_at(pos) > period end
if limit <= m or not expired(m + 1) then return {0, m, serving, serving} end
local best
if expired(limit) then
  best = limit
else
  local lo, hi = m + 1, limit
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if expired(mid) then lo = mid else hi = mid end
  end
  best = lo
end
local claimed = redis.call('BITCOUNT', KEYS[5], m + 1, best, 'BIT')
local unclaimed = (best - m) - claimed
redis.call('HSET', KEYS[1], 'max_expired', best)
local new_serving = serving
if unclaimed > 0 then
  redis.call('HINCRBY', KEYS[1], 'expired', unclaimed)
  if ARGV[3] == '1' then
    new_serving = redis.call('HINCRBY', KEYS[1], 'serving', unclaimed)
    record_issue(new_serving, now)
  end
end
return {unclaimed, best, new_serving, serving}
