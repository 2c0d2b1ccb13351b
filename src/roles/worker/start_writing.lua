-- Records a writer token for the game if the lease is still ours: our own token before we
-- write, or (handing the game back) a fresh token of the previous writer's worker id, so that
-- whoever claims next judges that worker's files again.
-- KEYS: 1 lease, 2 writer   ARGV: 1 lease token, 2 writer token to record
-- Returns 1 when recorded, 0 when the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('SET', KEYS[2], ARGV[2])
    return 1
end
return 0
