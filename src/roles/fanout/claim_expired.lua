-- Takes back the log entries whose delivery was not acknowledged within ACK_TIMEOUT: each is
-- claimed by this fanout to be routed again, or, once it has been delivered MAX_DELIVERIES
-- times, moved to the dead-letter stream with its reason and the workers tried, and
-- acknowledged. One script, so of several fanouts exactly one takes each entry.
-- KEYS: 1 log stream, 2 dead-letter stream, 3 tries hash, 4 failures hash
-- ARGV: 1 group, 2 this fanout's consumer name, 3 ACK_TIMEOUT ms, 4 MAX_DELIVERIES, 5 batch,
--       6 DEAD_LETTERS_MAX
-- Returns one {id, 'retry', record, previous consumer} or {id, 'dead', reason, dropped} per
-- entry, dropped being the oldest dead letters removed to keep the stream within its cap.
local function record_of(entry)
  if not entry then return nil end
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'record' then return fields[i + 1] end
  end
  return nil
end
local function forget(id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
local out = {}
local expired = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[5])
for _, p in ipairs(expired) do
  local id, owner, count = p[1], p[2], tonumber(p[4])
  local tried = redis.call('HGET', KEYS[3], id) or ''
  if string.sub(owner, 1, 7) ~= 'fanout:' then
    if tried == '' then tried = owner else tried = tried .. ' ' .. owner end
  end
  local record = record_of(redis.call('XRANGE', KEYS[1], id, id)[1])
  if not record then
    forget(id)
  elseif count >= tonumber(ARGV[4]) then
    local reason = redis.call('HGET', KEYS[4], id) or
      ('not acknowledged within ACK_TIMEOUT (' .. ARGV[3] .. ' ms)')
    local before = redis.call('XLEN', KEYS[2])
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'entry', id, 'record', record,
      'reason', reason, 'workers', tried, 'deliveries', tostring(count))
    local dropped = before + 1 - redis.call('XLEN', KEYS[2])
    forget(id)
    table.insert(out, {id, 'dead', reason, tostring(dropped)})
  else
    -- Without JUSTID: the delivery count goes up by one.
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
    if tried ~= '' then redis.call('HSET', KEYS[3], id, tried) end
    table.insert(out, {id, 'retry', record, owner})
  end
end
return out
