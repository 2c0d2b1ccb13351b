-- Registers the lobby socket of one (game, user): at most one socket per pair, across every
-- server process sharing this Redis. Refused while another socket holds the pair, so a player
-- who learnt someone's tokens cannot open (and then close) a lobby in their name.
-- KEYS: 1 status, 2 game set, 3 lobby sockets (user → socket id)
-- ARGV: 1 user token, 2 socket id (`<server id>:<socket>`)
-- Returns UNKNOWN, NOT IN GAME, OVER (a finished game: nothing to hold, nothing recorded),
-- TAKEN or OK.
local st = redis.call('GET', KEYS[1])
if not st then return 'UNKNOWN' end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 'NOT IN GAME' end
if st == 'Completed' or st == 'Timed Out' then return 'OVER' end
-- The same socket asking again (its first answer was lost with the connection) holds it.
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0
    and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then
  return 'TAKEN'
end
return 'OK'
