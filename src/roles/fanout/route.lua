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
local out = {}
for i = 5, #ARGV, 3 do
  local id, worker, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local p = redis.call('XPENDING', stream, group, id, id, 1)
  if #p == 0 or p[1][2] ~= me then
    table.insert(out, -1)
  elseif (held[worker] or 0) >= limit then
    table.insert(out, -2)
  else
    redis.call('XCLAIM', stream, group, worker, 0, id, 'JUSTID')
    if redis.call('PUBLISH', prefix .. worker, payload) > 0 then
      held[worker] = (held[worker] or 0) + 1
      table.insert(out, 1)
    else
      redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
      table.insert(out, 0)
    end
  end
end
return out
