-- Notes why a worker could not handle a log entry, while the entry is still pending: a note for
-- an entry already acknowledged or dead-lettered would never be removed.
-- KEYS: 1 log stream, 2 failures   ARGV: 1 group, 2 entry id, 3 `<worker>: <reason>`
-- Returns 1 when noted, 0 when the entry is no longer pending.
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not ok or #pending == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
