-- Trims the log stream to LOG_RETENTION, never past an entry any consumer group has not read
-- yet or still holds unacknowledged: the log holds the records in flight plus the window, for
-- the fanouts' group and for any other group reading the same log.
-- KEYS: 1 log stream
-- ARGV: 1 retention ms
-- Returns the number of entries removed.
local function parse(id)
  local ms, seq = string.match(id or '', '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local t = redis.call('TIME')
local min_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local min_seq = 0
for _, g in ipairs(groups) do
  local name
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then
      local ms, seq = parse(g[i + 1])
      -- Everything after the last entry the group read is unread.
      if ms and before(ms, seq + 1, min_ms, min_seq) then min_ms, min_seq = ms, seq + 1 end
    end
  end
  if name then
    local summary = redis.call('XPENDING', KEYS[1], name)
    if tonumber(summary[1]) > 0 then
      local ms, seq = parse(summary[2])
      if ms and before(ms, seq, min_ms, min_seq) then min_ms, min_seq = ms, seq end
    end
  end
end
if min_ms <= 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', min_ms, min_seq))
