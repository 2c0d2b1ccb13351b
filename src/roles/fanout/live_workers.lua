-- The workers whose heartbeat is fresh, by Redis's clock; forgets long-gone ones.
-- KEYS: 1 heartbeats
-- ARGV: 1 stale after ms, 2 forget after ms
-- Returns {now ms, worker id, …}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('(%d', now - tonumber(ARGV[2])))
local live = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%d', now - tonumber(ARGV[1])), '+inf')
table.insert(live, 1, string.format('%d', now))
return live
