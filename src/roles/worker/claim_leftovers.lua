-- The start-up sweep's claim on a game it found files of its own worker id for. Only one
-- process runs under a worker id, so a lease or a writer token of that id belongs to a process
-- that died or is paused: the sweep takes both over before it judges the files, and a paused
-- process that comes back can no longer finish the game with what it left.
-- KEYS: 1 lease, 2 done, 3 writer, 4 game host
-- ARGV: 1 the sweep's lease token, 2 worker id, 3 lease ms
-- Returns {answer, who}: done (files of) | unknown | busy (another worker's lease) |
-- other (another worker's writer token; the lease is the sweep's) | ours (lease and writer
-- are the sweep's).
local function id_of(token) return string.match(token, '^[^:]*') end
local done = redis.call('GET', KEYS[2])
if done then return {'done', done} end
if not redis.call('GET', KEYS[4]) then return {'unknown', ''} end
local lease = redis.call('GET', KEYS[1])
if lease and id_of(lease) ~= ARGV[2] then return {'busy', lease} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local writer = redis.call('GET', KEYS[3])
if writer and id_of(writer) ~= ARGV[2] then return {'other', writer} end
redis.call('SET', KEYS[3], ARGV[1])
return {'ours', ''}
