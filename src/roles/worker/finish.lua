-- Marks the game done with a worker's pair of files if the lease is still ours, or expired with
-- nobody else having started since (the writer is still our lease token), and drops the lease.
-- Tokens, not worker ids, are compared: another process under the same worker id (a paused
-- one that came back) is another writer.
-- KEYS: 1 lease, 2 done, 3 writer   ARGV: 1 lease token, 2 worker whose files hold the game
-- Returns {'done', files of} or {'lost', writer's token or ''}.
local done = redis.call('GET', KEYS[2])
if done then return {'done', done} end
local lease = redis.call('GET', KEYS[1])
local writer = redis.call('GET', KEYS[3])
if lease == ARGV[1] or (not lease and writer == ARGV[1]) then
    redis.call('SET', KEYS[2], ARGV[2])
    if lease then redis.call('DEL', KEYS[1]) end
    return {'done', ARGV[2]}
end
return {'lost', writer or ''}
