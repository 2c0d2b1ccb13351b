-- Gives every participant of a game its alias, once: a fresh UUIDv4 that the other players see
-- instead of its user token. Idempotent: participants that have an alias keep it.
-- KEYS: 1 status, 2 game set, 3 aliases (alias → token), 4 alias-of (token → alias)
-- ARGV: fresh UUIDv4 candidates, at least as many as participants
-- Returns alias-of as a flat list (token, alias, ...); empty for an unknown game.
local st = redis.call('GET', KEYS[1])
if not st then return {} end
local members = redis.call('SMEMBERS', KEYS[2])
table.sort(members)
local taken = {}
for _, u in ipairs(members) do taken[u] = true end
local i = 1
local created = false
for _, u in ipairs(members) do
  if redis.call('HEXISTS', KEYS[4], u) == 0 then
    local alias = ARGV[i]
    while alias and (taken[alias] or redis.call('HEXISTS', KEYS[3], alias) == 1) do
      i = i + 1
      alias = ARGV[i]
    end
    if not alias then return redis.error_reply('aliases: not enough candidates') end
    i = i + 1
    redis.call('HSET', KEYS[4], u, alias)
    redis.call('HSET', KEYS[3], alias, u)
    created = true
  end
end
-- A game whose keys already expire (cleaned) must not leave these behind.
local ttl = redis.call('PTTL', KEYS[1])
if created and ttl > 0 then
  redis.call('PEXPIRE', KEYS[3], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
return redis.call('HGETALL', KEYS[4])
