-- Read an event's state for recovery, with the run id of the server that holds it (the node of the
-- event's slot on a cluster). Returns {epoch, run, queue, limit, serving, tokens, lost, gaps,
-- max_expired, server run id}; absent fields are false.
local v = redis.call('HMGET', KEYS[1], 'epoch', 'run', 'queue', 'limit', 'serving', 'tokens', 'lost', 'gaps',
  'max_expired')
v[10] = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
return v
