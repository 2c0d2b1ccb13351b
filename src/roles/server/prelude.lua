-- Lua helpers shared by the scripts: integer formatting without exponents, the Redis clock,
-- and the rules.
--
-- `emit` appends one lifecycle record to the log stream and PUBLISHes it on the lobby channel
-- with its entry id added. It runs inside the script that commits the change the record
-- reports, so the record exists in Redis from the instant the state does. The PUBLISH is for
-- other subscribers and may fail (a forbidden channel, say) without undoing anything: the log
-- is the record's home. Every script that emits takes the log stream as its last key and the
-- lobby channel ('' when LOGGER_MODULE is not redis) and the record timestamp as its first two
-- arguments after its own.
local function int(x) return string.format('%d', x) end
local function now_us()
  local t = redis.call('TIME')
  return int(tonumber(t[1]) * 1000000 + tonumber(t[2]))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function emit(stream, channel, ts, message, task)
  if channel == '' then return 0 end
  local rec = '{"level":"INFO","timestamp":' .. cjson.encode(ts) .. ',"name":' ..
    cjson.encode(channel) .. ',"log_message":"' .. message .. '","task":' .. task .. '}'
  local id = redis.call('XADD', stream, '*', 'record', rec)
  redis.pcall('PUBLISH', channel, string.sub(rec, 1, -2) .. ',"entry_id":"' .. id .. '"}')
  return 1
end
local function emit_cleaning(stream, channel, ts, g, members)
  table.sort(members)
  for _, u in ipairs(members) do
    emit(stream, channel, ts, 'Cleaning Game Records',
      '{"game_token":"' .. g .. '","user_token":"' .. u .. '"}')
  end
  return #members
end
