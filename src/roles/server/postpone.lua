-- Moves the deadline of game ARGV[1] to ARGV[2] ms from now (Redis time), unless it is no
-- longer past: a script that started a turn or ended the game meanwhile wins.
-- KEYS: 1 game deadlines   ARGV: 1 g, 2 delay ms
-- Returns 1 when it moved the deadline.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if not due or due > now then return 0 end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
return 1
