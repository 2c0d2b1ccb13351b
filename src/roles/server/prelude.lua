-- Lua helpers shared by the scripts: integer formatting without exponents, the Redis clock,
-- and the rules.
--
-- `emit` appends one lifecycle record to the log stream and PUBLISHes it on the lobby channel
-- with its entry id added. It runs inside the script that commits the change the record
-- reports, so the record exists in Redis from the instant the state does. The PUBLISH is for
-- other subscribers and may fail (a forbidden channel, say) without undoing anything: the log
-- is the record's home. Every script that emits takes the log stream among its keys and the
-- lobby channel ('' when LOGGER_MODULE is not redis) and the record timestamp among its
-- arguments.
local function int(x) return string.format('%d', x) end
local function now_us()
  local t = redis.call('TIME')
  return int(tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The record is `pipeline::record::LifecycleRecord`; `task` is a table.
local function emit(stream, channel, ts, message, task)
  if channel == '' then return 0 end
  local rec = cjson.encode({level = 'INFO', timestamp = ts, name = channel,
    log_message = message, task = task})
  local id = redis.call('XADD', stream, '*', 'record', rec)
  redis.pcall('PUBLISH', channel, string.sub(rec, 1, -2) .. ',"entry_id":"' .. id .. '"}')
  return 1
end
-- `expire_ended` cleans a game that just ended when no worker will: with LOGGER_MODULE=default
-- no record reaches a worker's clean routine, so the script that ends the game puts `ttl`
-- seconds (REDIS_EXPIRY; '0' when a worker cleans, or CLEAN_ROUTINE is off) on every key of the
-- game and takes it out of games:participants. Such a script takes games:participants as
-- KEYS[first] and every key of the game after it, to the last; hero hashes are `hero_prefix`
-- followed by a member.
local function expire_ended(ttl, first, g, hero_prefix, members)
  ttl = tonumber(ttl) or 0
  if ttl <= 0 then return end
  redis.call('ZREM', KEYS[first], g)
  for i = first + 1, #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
  for _, u in ipairs(members) do redis.call('EXPIRE', hero_prefix .. u, ttl) end
end
local function emit_cleaning(stream, channel, ts, g, members)
  table.sort(members)
  for _, u in ipairs(members) do
    emit(stream, channel, ts, 'Cleaning Game Records', {game_token = g, user_token = u})
  end
  return #members
end
-- `attack_record` is the one attack record (`pipeline::record::AttackRecord`): an entry of
-- games:<g>:logs and, with the enemy renamed to its alias, the attacker's reply.
local function attack_record(ts, g, u, e, damage, prior, post)
  return cjson.encode({TIMESTAMP = ts, PAYLOAD = {GAME_TOKEN = g, USER_TOKEN = u},
    STATUS = {ACTION = 'ATTACK', DETAILS = {ENEMY_TOKEN = e, ENEMY_DAMAGE = math.floor(damage),
      ENEMY_HEALTH_PRIOR = math.floor(prior), ENEMY_HEALTH_POST = math.floor(post)}}})
end
