-- Gives up the lobby registration of one (game, user), if this socket still holds it. Run after
-- the socket's player has left the game (the eliminate script), so a new registration never
-- races with the old socket's departure.
-- KEYS: 1 lobby sockets (user → socket id)
-- ARGV: 1 user token, 2 socket id
-- Returns 1 when released, 0 when the pair was not this socket's.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
