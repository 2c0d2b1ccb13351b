-- Takes a game's ETL lease for the record of its host, unless the game is done or someone else
-- holds the lease; when nobody has written the game yet, records this lease token as its writer.
-- Taking it again with the same token (a retry) succeeds.
-- KEYS: 1 lease, 2 done, 3 writer, 4 game host
-- ARGV: 1 lease token, 2 lease ms, 3 user of the record
-- Returns {answer, who}: unknown | not_host | done (files of) | busy (lease holder) | fresh |
-- claimed (previous writer's token).
local host = redis.call('GET', KEYS[4])
local done = redis.call('GET', KEYS[2])
-- A written game's keys expire after REDIS_EXPIRY, its done marker later: a record that comes
-- back after a worker died finds the game done, not unknown.
if not host then
    if done then return {'done', done} end
    return {'unknown', ''}
end
if host ~= ARGV[3] then return {'not_host', ''} end
if done then return {'done', done} end
local lease = redis.call('GET', KEYS[1])
if lease and lease ~= ARGV[1] then return {'busy', lease} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local writer = redis.call('GET', KEYS[3])
if not writer then
    redis.call('SET', KEYS[3], ARGV[1])
    return {'fresh', ''}
end
return {'claimed', writer}
