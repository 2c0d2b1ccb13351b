-- The clean routine of a lobby that timed out: puts ARGV[2] seconds of TTL on every key of game
-- ARGV[1] (every hero hash included) and takes it out of games:participants and the deadlines,
-- only while its status says `Timed Out`. A `Game Timed Out` record about a game that waits,
-- plays or completed (a stale record, or another publisher's) changes nothing: a played game is
-- cleaned once its files are written.
-- KEYS: 1 status, 2 game set, 3 games:participants, 4 game deadlines, 5.. every key of g
-- ARGV: 1 g, 2 TTL seconds, 3 hero key prefix of g
-- Returns 1 when it expired the game, 0 when its status was another, 2 when it had none (gone
-- already: a record that came back after the keys expired).
local st = redis.call('GET', KEYS[1])
if not st then return 2 end
if st ~= 'Timed Out' then return 0 end
for i = 5, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
for _, u in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('EXPIRE', ARGV[3] .. u, ARGV[2])
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
