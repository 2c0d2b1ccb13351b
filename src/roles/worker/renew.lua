-- Extends the lease if it is still ours.
-- KEYS: 1 lease   ARGV: 1 lease token, 2 lease ms
-- Returns 1 when renewed, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
