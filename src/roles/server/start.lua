-- Everything a participant's START needs, in one round trip: the participants (sorted by user
-- token), their heroes and their aliases. Gives every participant its alias first, once: a
-- fresh UUIDv4 that the other players see instead of its user token. Idempotent: participants
-- that have an alias keep it.
-- KEYS: 1 status, 2 game set, 3 aliases (alias → token), 4 alias-of (token → alias)
-- ARGV: 1 hero key prefix (games:<g>:hero:), 2.. fresh UUIDv4 candidates, at least as many as
--       participants
-- Returns, for each participant in turn order: token, hero id, attack, health, alias ('' where a
-- hero field is missing); empty for an unknown game.
local st = redis.call('GET', KEYS[1])
if not st then return {} end
local members = redis.call('SMEMBERS', KEYS[2])
table.sort(members)
local taken = {}
for _, u in ipairs(members) do taken[u] = true end
local i = 2
local created = false
local out = {}
for _, u in ipairs(members) do
  local alias = redis.call('HGET', KEYS[4], u)
  if not alias then
    alias = ARGV[i]
    while alias and (taken[alias] or redis.call('HEXISTS', KEYS[3], alias) == 1) do
      i = i + 1
      alias = ARGV[i]
    end
    if not alias then return redis.error_reply('start: not enough alias candidates') end
    i = i + 1
    redis.call('HSET', KEYS[4], u, alias)
    redis.call('HSET', KEYS[3], alias, u)
    created = true
  end
  local h = redis.call('HMGET', ARGV[1] .. u, 'id', 'attack', 'health')
  out[#out + 1] = u
  out[#out + 1] = h[1] or ''
  out[#out + 1] = h[2] or ''
  out[#out + 1] = h[3] or ''
  out[#out + 1] = alias
end
-- A game whose keys already expire (cleaned) must not leave these behind.
local ttl = redis.call('PTTL', KEYS[1])
if created and ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return out
