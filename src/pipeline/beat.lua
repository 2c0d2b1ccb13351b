-- Records that a worker is alive, by Redis time: its score in the heartbeat set is now (ms).
-- KEYS: 1 heartbeats   ARGV: 1 worker id
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%d', now), ARGV[1])
return 1
