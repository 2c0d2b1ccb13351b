-- The hero hash of the participant a player names: an alias of game g, or (for the asker's own
-- hero) a user token. One round trip for the hero route.
-- KEYS: 1 aliases of g (alias → user token)
-- ARGV: 1 the name asked for, 2 hero key prefix of g (the hero key is the prefix .. user token)
local u = redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[1]
return redis.call('HGETALL', ARGV[2] .. u)
