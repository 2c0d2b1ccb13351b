-- u attacks e on u's turn: the damage, the attack log entry, the next turn or the end of the
-- game (Completed, with a Cleaning Game Records record per participant).
-- The enemy arrives as the alias the attacker knows it by and is resolved here (an unknown
-- name resolves to nobody: INVALID ENEMY after the other checks).
-- An attacker in the game is marked as just used, as at login and find: a game may outlast
-- USER_EXPIRY.
-- KEYS: 1 game set, 2 status, 3 order, 4 turns, 5 hero of u, 6 aliases of g, 7 logs,
--       8 eliminated, 9 game deadlines, 10 log stream, 11 lobby sockets (ended with the game),
--       12 users' last use, 13 games:participants, 14.. every key of g (`expire_ended`)
-- ARGV: 1 g, 2 u, 3 enemy alias, 4 timestamp, 5 max turns, 6 events channel, 7 lobby channel,
--       8 record timestamp, 9 turn window ms, 10 hero key prefix of g, 11 TTL of an ended game
local g, u = ARGV[1], ARGV[2]
local e = redis.call('HGET', KEYS[6], ARGV[3]) or ''
local ehero = ARGV[10] .. e
local st = redis.call('GET', KEYS[2])
if not st then return {'ERR', 'UNKNOWN GAME TOKEN'} end
if redis.call('SISMEMBER', KEYS[1], u) == 0 then return {'ERR', 'USER NOT IN GAME'} end
redis.call('ZADD', KEYS[12], 'XX', int(now_ms()), u)
if st == 'Completed' or st == 'Timed Out' then return {'ERR', 'GAME IS OVER'} end
if st ~= 'In-Progress' then return {'ERR', 'GAME NOT IN PROGRESS'} end
if u == e or redis.call('SISMEMBER', KEYS[1], e) == 0 then return {'ERR', 'INVALID ENEMY'} end
if redis.call('LINDEX', KEYS[3], 0) ~= u then return {'ERR', 'NOT YOUR TURN'} end
local prior = tonumber(redis.call('HGET', ehero, 'health') or '0') or 0
if prior <= 0 then return {'ERR', 'ENEMY IS DEAD'} end
local damage = tonumber(redis.call('HGET', KEYS[5], 'attack') or '0') or 0
local post = prior - damage
if post < 0 then post = 0 end
redis.call('HSET', ehero, 'health', int(post))
local record = attack_record(ARGV[4], g, u, e, damage, prior, post)
local attacks = redis.call('RPUSH', KEYS[7], record)
redis.call('LMOVE', KEYS[3], KEYS[3], 'LEFT', 'RIGHT')
if post == 0 then
  redis.call('LREM', KEYS[3], 0, e)
  redis.call('RPUSH', KEYS[8], e)
end
local turn = redis.call('INCR', KEYS[4])
if redis.call('LLEN', KEYS[3]) <= 1 or attacks >= tonumber(ARGV[5]) then
  redis.call('SET', KEYS[2], 'Completed')
  redis.call('ZREM', KEYS[9], g)
  redis.call('DEL', KEYS[11])
  redis.call('PUBLISH', ARGV[6], '{"kind":"complete","turn":' .. int(turn) .. '}')
  local members = redis.call('SMEMBERS', KEYS[1])
  expire_ended(ARGV[11], 13, g, ARGV[10], members)
  local emitted = emit_cleaning(KEYS[10], ARGV[7], ARGV[8], g, members)
  return {'DONE', record, '', turn, emitted}
end
local nxt = redis.call('LINDEX', KEYS[3], 0)
redis.call('ZADD', KEYS[9], int(now_ms() + tonumber(ARGV[9])), g)
redis.call('PUBLISH', ARGV[6], '{"kind":"turn","turn":' .. int(turn) .. ',"user":"' .. nxt ..
  '","at_us":' .. now_us() .. '}')
return {'NEXT', record, nxt, turn, 0}
