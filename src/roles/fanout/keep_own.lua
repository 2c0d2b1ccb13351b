-- Keeps the entries this fanout holds (no worker could take them yet) from looking abandoned:
-- resets the idle time of each that is still this fanout's pending entry. The others were
-- re-claimed by another fanout while this one was paused; they are that fanout's to route.
-- KEYS: 1 log stream
-- ARGV: 1 group, 2 this fanout's consumer, 3… entry ids
-- Returns the ids still this fanout's.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == me then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
    table.insert(mine, ARGV[i])
  end
end
return mine
