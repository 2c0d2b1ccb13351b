-- u falls (its socket closed, or its turn ran out when ARGV[2] names that turn); the game ends
-- when one player is left.
-- KEYS: 1 status, 2 order, 3 turns, 4 hero of u, 5 eliminated, 6 ready, 7 game set,
--       8 game deadlines, 9 log stream, 10 lobby sockets (ended with the game),
--       11 games:participants, 12.. every key of g (`expire_ended`)
-- ARGV: 1 u, 2 expected turn ('' = whenever), 3 events channel, 4 lobby channel,
--       5 record timestamp, 6 g, 7 turn window ms, 8 hero key prefix of g, 9 TTL of an ended
--       game
local u = ARGV[1]
local st = redis.call('GET', KEYS[1])
if st == 'Waiting Lobby' then
  if ARGV[2] == '' then redis.call('SREM', KEYS[6], u) end
  return {'NONE', 0}
end
if st ~= 'In-Progress' then return {'NONE', 0} end
local head = redis.call('LINDEX', KEYS[2], 0)
if ARGV[2] ~= '' and (redis.call('GET', KEYS[3]) ~= ARGV[2] or head ~= u) then
  return {'NONE', 0}
end
if not redis.call('LPOS', KEYS[2], u) then return {'NONE', 0} end
redis.call('HSET', KEYS[4], 'health', '0')
redis.call('LREM', KEYS[2], 0, u)
redis.call('RPUSH', KEYS[5], u)
if redis.call('LLEN', KEYS[2]) <= 1 then
  redis.call('SET', KEYS[1], 'Completed')
  local turn = redis.call('INCR', KEYS[3])
  redis.call('ZREM', KEYS[8], ARGV[6])
  redis.call('DEL', KEYS[10])
  redis.call('PUBLISH', ARGV[3], '{"kind":"complete","turn":' .. int(turn) .. '}')
  local members = redis.call('SMEMBERS', KEYS[7])
  expire_ended(ARGV[9], 11, ARGV[6], ARGV[8], members)
  return {'DONE', emit_cleaning(KEYS[9], ARGV[4], ARGV[5], ARGV[6], members)}
end
if head == u then
  local turn = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[8], int(now_ms() + tonumber(ARGV[7])), ARGV[6])
  redis.call('PUBLISH', ARGV[3], '{"kind":"turn","turn":' .. int(turn) .. ',"user":"' ..
    redis.call('LINDEX', KEYS[2], 0) .. '","at_us":' .. now_us() .. '}')
end
return {'ELIMINATED', 0}
