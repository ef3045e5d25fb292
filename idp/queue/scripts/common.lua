-- Shared helpers, prepended to every script.
-- KEYS[1] counters hash, KEYS[2] places hash, KEYS[3] entry-time index, KEYS[4] serving issues,
-- KEYS[5] claimed bitmap, KEYS[6] idempotency hash (same layout for every script).
-- ARGV[1] is always the event's epoch as the database knows it ('' when it knows none yet).
-- Counters can reach 2^63-1 while Lua numbers are doubles: values that may be large are returned as the
-- strings Redis stores, never as Lua numbers.
local function num(v) if v then return tonumber(v) end return 0 end

-- Stop unless this Redis state is the one the database knows, on the server run it was checked on:
-- a missing epoch is an empty or flushed store, another epoch a store older than the last recovery,
-- another run a restarted (or replaced) server whose data may come from an older snapshot.
local function check_identity()
  local id = redis.call('HMGET', KEYS[1], 'epoch', 'run')
  if not id[1] then error({err = 'IDPLOST missing'}) end
  if id[1] ~= ARGV[1] then error({err = 'IDPLOST epoch'}) end
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  if id[2] ~= run then error({err = 'IDPLOST restart'}) end
end

-- The position of a place: ARGV[2] is the request id's hash, ARGV[3] its raw bytes ('' unless it is a
-- version-4 UUID) for places an earlier release wrote raw (no hash ever equals the raw bytes of one).
local function find_place()
  local p = redis.call('HGET', KEYS[2], ARGV[2])
  if not p and ARGV[3] ~= '' then p = redis.call('HGET', KEYS[2], ARGV[3]) end
  return p
end

-- Whether the positions the database reserved (the 'limit' counter) are all handed out.
local function positions_used_up()
  return num(redis.call('HGET', KEYS[1], 'queue')) >= num(redis.call('HGET', KEYS[1], 'limit'))
end

-- A new place for request id hash rid at the next position, entered at now or at the last entry time
-- if that is later (entry times never go backwards): its position and entry time.
local function new_place(rid, now)
  local pos = redis.call('HINCRBY', KEYS[1], 'queue', 1)
  local last = num(redis.call('HGET', KEYS[1], 'last_time'))
  local t = now
  if last > t then t = last end
  if t > last or redis.call('ZCARD', KEYS[3]) == 0 then
    redis.call('ZADD', KEYS[3], pos, t)
    redis.call('HSET', KEYS[1], 'last_time', t)
  end
  redis.call('HSET', KEYS[2], rid, pos)
  return pos, t
end

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

-- Position ranges lost with an earlier store ("lo-hi;lo-hi", ascending): nobody holds them.
local function gaps()
  local out = {}
  local s = redis.call('HGET', KEYS[1], 'gaps')
  if s then
    for lo, hi in string.gmatch(s, '(%d+)-(%d+)') do out[#out + 1] = {tonumber(lo), tonumber(hi)} end
  end
  return out
end

-- How many positions of [a, b] lie in lost ranges.
local function lost_between(a, b)
  local n = 0
  for _, g in ipairs(gaps()) do
    local lo, hi = g[1], g[2]
    if lo < a then lo = a end
    if hi > b then hi = b end
    if hi >= lo then n = n + hi - lo + 1 end
  end
  return n
end

-- Raise the serving counter by `by` held positions: lost ranges on the way are skipped, not counted.
-- Returns the new counter as the string Redis stores (exact up to 2^63-1; HINCRBY refuses overflow).
local function advance(by)
  local serving = num(redis.call('HGET', KEYS[1], 'serving'))
  local target = serving + tonumber(by)
  local extra = 0
  for _, g in ipairs(gaps()) do
    local lo, hi = g[1], g[2]
    if lo > target + extra then break end
    if hi > serving then
      if lo <= serving then lo = serving + 1 end
      extra = extra + hi - lo + 1
    end
  end
  redis.call('HINCRBY', KEYS[1], 'serving', by)
  if extra > 0 then redis.call('HINCRBY', KEYS[1], 'serving', extra) end
  return redis.call('HGET', KEYS[1], 'serving')
end
