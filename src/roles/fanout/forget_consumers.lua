-- Deletes the consumers of the fanouts' group that hold nothing and belong to no one alive: a
-- worker's consumer once it is not among the live workers (fresh heartbeat; a worker that comes
-- back is recreated by the next XCLAIM that routes to it), a fanout's once it has not read for a
-- while. Workers started with random ids would otherwise leave one consumer each in the group
-- for ever. The live workers come as arguments, read by the caller from `<lobby>:workers`: on a
-- Redis Cluster that key lies in another slot than a shard's log.
-- KEYS: 1 log stream
-- ARGV: 1 group, 2 fanout consumer idle ms, 3 fanout consumer prefix, 4… live worker ids
-- Returns the number of consumers deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local live = {}
for i = 4, #ARGV do live[ARGV[i]] = true end
local prefix = ARGV[3]
local deleted = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local name, pending, idle = info['name'], tonumber(info['pending']), tonumber(info['idle'])
  if name and pending == 0 then
    local gone
    if string.sub(name, 1, #prefix) == prefix then
      gone = idle and idle > tonumber(ARGV[2])
    else
      gone = not live[name]
    end
    if gone then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      deleted = deleted + 1
    end
  end
end
return deleted
