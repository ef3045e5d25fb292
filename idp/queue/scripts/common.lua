-- Shared helpers, prepended to every script.
-- KEYS[1] counters hash, KEYS[2] places hash, KEYS[3] entry-time index, KEYS[4] serving issues,
-- KEYS[5] claimed bitmap, KEYS[6] idempotency hash (same layout for every script).
local function num(v) if v then return tonumber(v) end return 0 end

local function entry_time(pos)
  local r = redis.call('ZREVRANGEBYSCORE', KEYS[3], pos, '-inf', 'LIMIT', 0, 1)
  if r[1] then return tonumber(r[1]) end
  return 0
end

-- Issue time of the first serving value >= pos, or nil when the counter never reached pos by increment.
local function issue_time(pos)
  local r = redis.call('ZRANGEBYSCORE', KEYS[4], pos, '+inf', 'LIMIT', 0, 1)
  if r[1] then return tonumber(string.match(r[1], ':(%d+)$')) end
  return nil
end

local function admitted_at(pos)
  local et = entry_time(pos)
  local it = issue_time(pos)
  if it and it > et then return it end
  return et
end

local function record_issue(serving, now)
  local last = num(redis.call('HGET', KEYS[1], 'last_issue'))
  local t = now
  if last > t then t = last end
  redis.call('ZADD', KEYS[4], serving, serving .. ':' .. t)
  redis.call('HSET', KEYS[1], 'last_issue', t)
end
