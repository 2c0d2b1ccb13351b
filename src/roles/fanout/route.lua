-- Hands log entries to workers: each worker's entries become its pending entries (one XCLAIM …
-- JUSTID per worker), as many as keep it within the limit of unacknowledged entries, counted
-- from the group's pending list, so the limit holds across every fanout; each claimed entry is
-- then PUBLISHed on the worker's channel, and what reached nobody comes back to this fanout.
-- The caller has checked that the entries are still its own.
-- KEYS: 1 log stream
-- ARGV: 1 group, 2 limit per worker, 3 this fanout's consumer, 4 worker channel prefix, then
--       per worker: worker, n, n entry ids, 'JUSTID', n payloads
-- Returns per entry, in order: 1 delivered, 0 claimed but heard by nobody, -2 not claimed.
local stream, group, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local me, prefix = ARGV[3], ARGV[4]
local held = {}
local summary = redis.call('XPENDING', stream, group)
if summary[4] then
  for _, c in ipairs(summary[4]) do held[c[1]] = tonumber(c[2]) end
end
local out, unheard = {}, {}
local i = 5
while i <= #ARGV do
  local worker, n = ARGV[i], tonumber(ARGV[i + 1])
  local first = i + 2
  local payloads = first + n + 1
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
  local channel = prefix .. worker
  for j = 0, n - 1 do
    if j >= allowed then
      out[#out + 1] = -2
    elseif redis.call('PUBLISH', channel, ARGV[payloads + j]) > 0 then
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
      unheard[#unheard + 1] = ARGV[first + j]
    end
  end
  i = payloads + n
end
if #unheard > 0 then
  unheard[#unheard + 1] = 'JUSTID'
  redis.call('XCLAIM', stream, group, me, '0', unpack(unheard))
end
return out
