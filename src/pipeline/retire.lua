-- Deletes a stopping worker's consumer of the log's group, but only while it holds no pending
-- entry: XGROUP DELCONSUMER drops the consumer's pending entries from the group, and an entry
-- dropped there is never routed again.
-- KEYS: 1 log stream   ARGV: 1 group, 2 consumer (the worker id)
-- Returns 1 when deleted (or there is no such group: nothing to hold), 0 when it still holds
-- entries.
local ok, held = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if not ok then return 1 end
if #held > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
