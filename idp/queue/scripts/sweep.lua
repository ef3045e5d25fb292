-- Expiry sweep: find the end of the expired prefix of admitted positions by binary search,
-- count its unclaimed positions, and (optionally) move the serving counter on by that many.
-- Positions in lost ranges (gaps left by a store loss) are held by nobody: never counted.
-- ARGV[1] epoch, ARGV[2] now, ARGV[3] period, ARGV[4] incr_serving_on_expiry (1/0)
-- Returns {expired_unclaimed, max_expired, serving (string), previous_serving (string)}
check_identity()
local now = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local m = num(redis.call('HGET', KEYS[1], 'max_expired'))
local serving_s = redis.call('HGET', KEYS[1], 'serving') or '0'
local serving = tonumber(serving_s)
local queue = num(redis.call('HGET', KEYS[1], 'queue'))
local limit = serving
if queue < limit then limit = queue end
local function expired(pos) return now - admitted_at(pos) > period end
if limit <= m or not expired(m + 1) then return {0, m, serving_s, serving_s} end
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
local unclaimed = (best - m) - claimed - lost_between(m + 1, best)
if unclaimed < 0 then unclaimed = 0 end
redis.call('HSET', KEYS[1], 'max_expired', best)
local new_serving = serving_s
if unclaimed > 0 then
  redis.call('HINCRBY', KEYS[1], 'expired', unclaimed)
  if ARGV[4] == '1' then
    new_serving = advance(unclaimed)
    record_issue(new_serving, now)
  end
end
return {unclaimed, best, new_serving, serving_s}
