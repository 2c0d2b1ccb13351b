-- Forgets the given users of one shard if they are still idle for USER_EXPIRY: their name,
-- token and last use (a user away from its home shard has only a last use there).
-- KEYS: 1 users, 2 user tokens, 3 users' last use, 4 user names
-- ARGV: 1 idle ms, 2.. user tokens the caller found idle everywhere
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local forgotten = 0
for i = 2, #ARGV do
  local token = ARGV[i]
  local last = tonumber(redis.call('ZSCORE', KEYS[3], token))
  -- Used again since the caller looked: keep it.
  if not last or last < now - tonumber(ARGV[1]) then
    local name = redis.call('HGET', KEYS[4], token)
    if name and redis.call('HGET', KEYS[1], name) == token then
      redis.call('HDEL', KEYS[1], name)
    end
    redis.call('HDEL', KEYS[4], token)
    redis.call('SREM', KEYS[2], token)
    redis.call('ZREM', KEYS[3], token)
    forgotten = forgotten + 1
  end
end
return forgotten
