-- Marks u ready; when all n players are in and ready, starts the game (order sorted, turn 1)
-- and emits Starting Match.
-- KEYS: 1 game set, 2 status, 3 participants, 4 ready, 5 order, 6 turns, 7 game deadlines,
--       8 log stream, 9 users' open lobby
-- ARGV: 1 u, 2 events channel, 3 lobby channel, 4 record timestamp, 5 g, 6 hero key prefix,
--       7 turn window ms
local u = ARGV[1]
local st = redis.call('GET', KEYS[2])
if not st then return {'UNKNOWN'} end
if redis.call('SISMEMBER', KEYS[1], u) == 0 then return {'NOT IN GAME'} end
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
      heroes[i] = '"' .. p .. '":{"token":"' .. p .. '","id":' ..
        ((id and int(id)) or 'null') .. ',"attack":' .. int(tonumber(h[2]) or 0) ..
        ',"health":' .. int(tonumber(h[3]) or 0) .. '}'
    end
    emit(KEYS[8], ARGV[3], ARGV[4], 'Starting Match',
      '{"PAYLOAD":{"GAME_TOKEN":"' .. ARGV[5] .. '","PARTICIPANTS":["' ..
      table.concat(order, '","') .. '"],"PARTICIPANTS_HEROS":{' .. table.concat(heroes, ',') ..
      '}},"STATUS":{"GAME":"START"}}')
  end
  return {'STARTED'}
end
return {'WAITING'}
