-- Records a lease token as the game's writer if the lease is still that token's.
-- KEYS: 1 lease, 2 writer   ARGV: 1 lease token
-- Returns 1 when recorded, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[1])
    return 1
end
return 0
