-- Hands log entries to workers as their pending entries: for each worker, XCLAIM … JUSTID of
-- as many of its entries as keep it within the limit of unacknowledged entries, counted from
-- the group's pending list, so the limit holds across every fanout. The caller then PUBLISHes
-- what was claimed; the caller has checked that the entries are still its own.
-- KEYS: 1 log stream
-- ARGV: 1 group, 2 limit per worker, then per worker: worker, n, n entry ids, 'JUSTID'
-- Returns per worker, in order: how many of its entries (the first ones) it was given.
local stream, group, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local held = {}
local summary = redis.call('XPENDING', stream, group)
if summary[4] then
  for _, c in ipairs(summary[4]) do held[c[1]] = tonumber(c[2]) end
end
local out = {}
local i = 3
while i <= #ARGV do
  local worker, n = ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  local allowed = math.max(0, math.min(n, limit - (held[worker] or 0)))
  if allowed == n then
    -- The ids and the JUSTID after them, straight from the arguments.
    redis.call('XCLAIM', stream, group, worker, '0', unpack(ARGV, first, first + n))
  elseif allowed > 0 then
    local args = {}
    for j = first, first + allowed - 1 do args[#args + 1] = ARGV[j] end
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', stream, group, worker, '0', unpack(args))
  end
  held[worker] = (held[worker] or 0) + allowed
  out[#out + 1] = allowed
  i = first + n + 1
end
return out
