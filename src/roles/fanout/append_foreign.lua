-- Appends records that another publisher put on the lobby channel (they carry no entry id) to
-- the log, once each however many fanouts heard them: a short-lived marker per record digest.
-- KEYS: 1 log stream
-- ARGV: 1 marker key prefix, 2 marker TTL seconds, 3… records
-- Returns the number of records appended.
local appended = 0
for i = 3, #ARGV do
  if redis.call('SET', ARGV[1] .. redis.sha1hex(ARGV[i]), '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], '*', 'record', ARGV[i])
    appended = appended + 1
  end
end
return appended
