-- Records a worker as the game's writer if the lease is still ours.
-- KEYS: 1 lease, 2 writer   ARGV: 1 lease token, 2 worker id
-- Returns 1 when recorded, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[2])
    return 1
end
return 0
