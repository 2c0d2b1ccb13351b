-- Gives the lease back if it is ours.
-- KEYS: 1 lease   ARGV: 1 lease token
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
