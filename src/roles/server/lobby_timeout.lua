-- Times out a lobby still waiting after its window (by Redis time) and emits Game Timed Out.
-- KEYS: 1 status, 2 open lobbies of n, 3 created, 4 game deadlines, 5 log stream, 6 game set,
--       7 users' open lobby, 8 lobby sockets (ended with the game), 9 games:participants,
--       10.. every key of g (`expire_ended`)
-- ARGV: 1 g, 2 events channel, 3 lobby window ms, 4 lobby channel, 5 record timestamp,
--       6 hero key prefix of g, 7 TTL of an ended game
if redis.call('GET', KEYS[1]) ~= 'Waiting Lobby' then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local created = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if now_ms() - created < tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], 'Timed Out')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[8])
local members = redis.call('SMEMBERS', KEYS[6])
if #members > 0 then redis.call('HDEL', KEYS[7], unpack(members)) end
expire_ended(ARGV[7], 9, ARGV[1], ARGV[6], members)
redis.call('PUBLISH', ARGV[2], '{"kind":"timed_out"}')
emit(KEYS[5], ARGV[4], ARGV[5], 'Game Timed Out', {game_token = ARGV[1]})
return 1
