-- Hands log entries to workers. Each entry this fanout still owns becomes the chosen worker's
-- pending entry (XCLAIM … JUSTID) and is PUBLISHed on the worker's channel, as long as that
-- worker holds fewer than the limit of unacknowledged entries, counted from the group's pending
-- list (so the limit holds across every fanout). An entry another fanout has taken meanwhile
-- (this one was paused past ACK_TIMEOUT and the other re-claimed it, counting a delivery) is left
-- alone: taking it back would hide that delivery. One whose PUBLISH reached nobody stays this
-- fanout's.
-- KEYS: 1 log stream
-- ARGV: 1 group, 2 this fanout's consumer, 3 limit per worker, 4 worker channel prefix,
--       then per entry: id, worker, payload
-- Returns per entry: 1 delivered, 0 nobody listens on the channel, -1 no longer this fanout's,
-- -2 the worker is full.
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local limit, prefix = tonumber(ARGV[3]), ARGV[4]
local held = {}
local summary = redis.call('XPENDING', stream, group)
if summary[4] then
  for _, c in ipairs(summary[4]) do held[c[1]] = tonumber(c[2]) end
end
-- What this fanout holds, in one call: normally just the batch it read or claimed.
local mine = {}
if (held[me] or 0) > 0 then
  for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', held[me], me)) do
    mine[p[1]] = true
  end
end
local out, claims, order = {}, {}, {}
for i = 5, #ARGV, 3 do
  local n = (i - 5) / 3 + 1
  local id, worker = ARGV[i], ARGV[i + 1]
  if not mine[id] then
    out[n] = -1
  elseif (held[worker] or 0) >= limit then
    out[n] = -2
  else
    held[worker] = (held[worker] or 0) + 1
    if not claims[worker] then
      claims[worker] = {}
      table.insert(order, worker)
    end
    table.insert(claims[worker], id)
    out[n] = 1
  end
end
-- One XCLAIM per worker, then one PUBLISH per entry; what reached nobody comes back to us.
for _, worker in ipairs(order) do
  local args = {'XCLAIM', stream, group, worker, 0}
  for _, id in ipairs(claims[worker]) do table.insert(args, id) end
  table.insert(args, 'JUSTID')
  redis.call(unpack(args))
end
for i = 5, #ARGV, 3 do
  local n = (i - 5) / 3 + 1
  if out[n] == 1 and redis.call('PUBLISH', prefix .. ARGV[i + 1], ARGV[i + 2]) == 0 then
    redis.call('XCLAIM', stream, group, me, 0, ARGV[i], 'JUSTID')
    out[n] = 0
  end
end
return out
