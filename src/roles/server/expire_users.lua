-- Forgets users idle for USER_EXPIRY: their name, token and last use.
-- KEYS: 1 users, 2 user tokens, 3 users' last use, 4 user names
-- ARGV: 1 idle ms, 2 limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idle = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf',
  string.format('(%d', now - tonumber(ARGV[1])), 'LIMIT', 0, ARGV[2])
for _, token in ipairs(idle) do
  local name = redis.call('HGET', KEYS[4], token)
  if name and redis.call('HGET', KEYS[1], name) == token then
    redis.call('HDEL', KEYS[1], name)
  end
  redis.call('HDEL', KEYS[4], token)
  redis.call('SREM', KEYS[2], token)
  redis.call('ZREM', KEYS[3], token)
end
return #idle
