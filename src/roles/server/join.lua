-- Puts user u in a lobby of n players: the given one (join) or a new one (create), drawing a
-- hero nobody in the game has. A user waits in one open lobby at most.
-- KEYS: 1 game set, 2 participants, 3 status, 4 host, 5 heroes taken, 6 hero of u, 7 created,
--       8 games:participants, 9 games:players:n, 10 open lobbies of n, 11 superheros,
--       12 game deadlines, 13 users' last use, 14 users' open lobby
-- ARGV: 1 g, 2 u, 3 n, 4 lobby window ms, 5 mode (join | create | create-force),
--       6 and 7: a game's status key is ARGV[6] .. game .. ARGV[7],
--       8 'away' when this is not the user's home shard
-- Every key is of the game's shard: its open lobby and last use are the user's in that shard.
local g, u, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, window, mode = now_ms(), tonumber(ARGV[4]), ARGV[5]
if ARGV[8] == 'away' then
  -- Away from home, this shard's last use is only a sign of life for the home shard's sweep.
  redis.call('ZADD', KEYS[13], int(now), u)
else
  redis.call('ZADD', KEYS[13], 'XX', int(now), u)
end
-- A user waits in one open lobby at most: asking again finds the same one.
local mine = redis.call('HGET', KEYS[14], u)
if mine then
  if redis.call('GET', ARGV[6] .. mine .. ARGV[7]) == 'Waiting Lobby' then return {'MINE', mine} end
  redis.call('HDEL', KEYS[14], u)
end
if mode == 'join' then
  if redis.call('GET', KEYS[3]) ~= 'Waiting Lobby' then return {'CLOSED'} end
  local created = tonumber(redis.call('GET', KEYS[7]) or '0') or 0
  if now - created >= window then return {'STALE'} end
  if redis.call('SISMEMBER', KEYS[1], u) == 1 then return {'MINE', g} end
  n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if redis.call('SCARD', KEYS[1]) >= n then return {'FULL'} end
else
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'RETRY'} end
  -- Creating while an open lobby exists would split players between half-full games.
  if mode == 'create' and redis.call('ZCOUNT', KEYS[10], now - window + 1, '+inf') > 0 then
    return {'RETRY'}
  end
end
local id = nil
for _, cand in ipairs(redis.call('HRANDFIELD', KEYS[11], 16)) do
  if redis.call('SISMEMBER', KEYS[5], cand) == 0 then id = cand break end
end
if not id then
  for _, cand in ipairs(redis.call('HKEYS', KEYS[11])) do
    if redis.call('SISMEMBER', KEYS[5], cand) == 0 then id = cand break end
  end
end
if not id then return {'NO HEROES'} end
local ok, doc = pcall(cjson.decode, redis.call('HGET', KEYS[11], id))
if not ok or type(doc) ~= 'table' or type(doc['powerstats']) ~= 'table' then
  return {'BAD HERO', id}
end
local attack = tonumber(doc['powerstats']['attack'])
local health = tonumber(doc['powerstats']['health'])
if not attack or not health then return {'BAD HERO', id} end
if mode ~= 'join' then
  redis.call('SET', KEYS[2], int(n))
  redis.call('SET', KEYS[3], 'Waiting Lobby')
  redis.call('SET', KEYS[4], u)
  redis.call('SET', KEYS[7], int(now))
  redis.call('RPUSH', KEYS[9], g)
  -- The original's list of games per size only grows: keep its newest entries only.
  redis.call('LTRIM', KEYS[9], -10000, -1)
  redis.call('ZADD', KEYS[10], int(now), g)
  redis.call('ZADD', KEYS[12], int(now + window), g)
end
redis.call('SADD', KEYS[1], u)
redis.call('SADD', KEYS[5], id)
redis.call('HSET', KEYS[6], 'id', id, 'attack', int(attack), 'health', int(health))
redis.call('HSET', KEYS[14], u, g)
local count = redis.call('SCARD', KEYS[1])
redis.call('ZADD', KEYS[8], count, g)
if count >= n then redis.call('ZREM', KEYS[10], g) end
return {'OK', id}
