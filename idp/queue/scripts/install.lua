-- Give an event's Redis state the identity the database recorded, after first use or a loss.
-- Applied only if the state is still the one the caller inspected (compare and set).
-- ARGV[1] epoch found ('' for none), ARGV[2] queue counter found ('' for none), ARGV[3] new epoch,
-- ARGV[4] new queue counter and limit (every position up to it is taken or lost), ARGV[5] serving,
-- ARGV[6] lost ranges ("lo-hi;..."), ARGV[7] now, ARGV[8] tokens, ARGV[9] lost positions,
-- ARGV[10] '1' to drop the places found first (a state the database does not know).
-- Returns 1 if installed, 0 if the state changed meanwhile.
local found = redis.call('HMGET', KEYS[1], 'epoch', 'queue')
if (found[1] or '') ~= ARGV[1] or (found[2] or '') ~= ARGV[2] then return 0 end
if ARGV[10] == '1' then redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]) end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local before = redis.call('HGET', KEYS[1], 'serving') or '0'
redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'run', run, 'queue', ARGV[4], 'limit', ARGV[4],
  'serving', ARGV[5], 'tokens', ARGV[8], 'lost', ARGV[9])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'gaps', ARGV[6]) end
if before ~= ARGV[5] then record_issue(ARGV[5], tonumber(ARGV[7])) end
return 1
