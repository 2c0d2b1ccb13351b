-- Deletes the consumers of the fanouts' group that hold nothing and belong to no one alive: a
-- worker's consumer once its heartbeat is stale (a worker that comes back is recreated by the
-- next XCLAIM that routes to it), a fanout's once it has not read for a while. Workers started
-- with random ids would otherwise leave one consumer each in the group for ever.
-- KEYS: 1 log stream, 2 worker heartbeats
-- ARGV: 1 group, 2 heartbeat stale after ms, 3 fanout consumer idle ms, 4 fanout consumer prefix
-- Returns the number of consumers deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[4]
local deleted = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local name, pending, idle = info['name'], tonumber(info['pending']), tonumber(info['idle'])
  if name and pending == 0 then
    local gone
    if string.sub(name, 1, #prefix) == prefix then
      gone = idle and idle > tonumber(ARGV[3])
    else
      local beat = redis.call('ZSCORE', KEYS[2], name)
      gone = not beat or tonumber(beat) < now - tonumber(ARGV[2])
    end
    if gone then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      deleted = deleted + 1
    end
  end
end
return deleted
