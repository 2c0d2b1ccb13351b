-- Registers socket ARGV[8] as the one lobby socket of (game, u) and marks u ready; when all n
-- players are in and ready, starts the game (order sorted, turn 1) and emits Starting Match.
-- At most one socket per (game, user), across every server process sharing this Redis: while
-- another socket holds the pair the registration is refused (TAKEN), so a player who learnt
-- someone's tokens cannot open (and then close) a lobby in their name. The same socket asking
-- again (its first answer was lost with the connection) holds it.
-- A participant's registration marks it as just used, as login and find do: a game may outlast
-- USER_EXPIRY.
-- KEYS: 1 game set, 2 status, 3 participants, 4 ready, 5 order, 6 turns, 7 game deadlines,
--       8 log stream, 9 users' open lobby, 10 lobby sockets (user → socket id),
--       11 users' last use
-- ARGV: 1 u, 2 events channel, 3 lobby channel, 4 record timestamp, 5 g, 6 hero key prefix,
--       7 turn window ms, 8 socket id (`<server id>:<socket>`)
-- Returns UNKNOWN, NOT IN GAME, TAKEN, STATUS <status> (a finished game is not registered),
-- STARTED or WAITING.
local u = ARGV[1]
local st = redis.call('GET', KEYS[2])
if not st then return {'UNKNOWN'} end
if redis.call('SISMEMBER', KEYS[1], u) == 0 then return {'NOT IN GAME'} end
redis.call('ZADD', KEYS[11], 'XX', int(now_ms()), u)
if st == 'Completed' or st == 'Timed Out' then return {'STATUS', st} end
if redis.call('HSETNX', KEYS[10], u, ARGV[8]) == 0
    and redis.call('HGET', KEYS[10], u) ~= ARGV[8] then
  return {'TAKEN'}
end
if st ~= 'Waiting Lobby' then return {'STATUS', st} end
redis.call('SADD', KEYS[4], u)
local n = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if redis.call('SCARD', KEYS[4]) >= n and redis.call('SCARD', KEYS[1]) >= n then
  local order = redis.call('SMEMBERS', KEYS[1])
  table.sort(order)
  redis.call('SET', KEYS[2], 'In-Progress')
  redis.call('DEL', KEYS[5])
  redis.call('RPUSH', KEYS[5], unpack(order))
  redis.call('SET', KEYS[6], '1')
  redis.call('ZADD', KEYS[7], int(now_ms() + tonumber(ARGV[7])), ARGV[5])
  redis.call('HDEL', KEYS[9], unpack(order))
  redis.call('PUBLISH', ARGV[2], '{"kind":"start","turn":1,"user":"' .. order[1] ..
    '","at_us":' .. now_us() .. '}')
  if ARGV[3] ~= '' then
    -- Starting Match carries the START message (participants sorted, heroes by token).
    local heroes = {}
    for i, p in ipairs(order) do
      local h = redis.call('HMGET', ARGV[6] .. p, 'id', 'attack', 'health')
      local id = tonumber(h[1])
      heroes[p] = {token = p, id = (id and math.floor(id)) or cjson.null,
        attack = math.floor(tonumber(h[2]) or 0), health = math.floor(tonumber(h[3]) or 0)}
    end
    emit(KEYS[8], ARGV[3], ARGV[4], 'Starting Match',
      {PAYLOAD = {GAME_TOKEN = ARGV[5], PARTICIPANTS = order, PARTICIPANTS_HEROS = heroes},
       STATUS = {GAME = 'START'}})
  end
  return {'STARTED'}
end
return {'WAITING'}
