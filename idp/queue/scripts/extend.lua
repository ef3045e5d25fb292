-- Let the event hand out positions up to a limit the database has reserved.
-- ARGV[1] epoch, ARGV[2] new limit. Returns 1.
check_identity()
if num(redis.call('HGET', KEYS[1], 'limit')) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'limit', ARGV[2])
end
return 1
