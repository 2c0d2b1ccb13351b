-- The user token of a name, created on first login; either way marks the user as just used.
-- KEYS: 1 users, 2 user tokens, 3 users' last use, 4 user names   ARGV: 1 name, 2 fresh token
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then
  redis.call('ZADD', KEYS[3], now, known)
  redis.call('HSET', KEYS[4], known, ARGV[1])
  return {known, 0}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[1])
return {ARGV[2], 1}
