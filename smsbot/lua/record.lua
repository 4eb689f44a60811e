-- Record sent entries in ONE command (a single Redis; a cluster gets one XDEL per stream instead,
-- as its streams live in different slots): XDEL each from its stream, XACK first for a queue
-- stream (its entries are in the consumer group's pending list).
-- ARG: smsbot.steps.RECORD; the KEYS are the streams (all variadic), and after the declared ARGV
-- come, for each stream, the number of its ids, then the ids
local i = NARGS + 1
for _, stream in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  local ids = { unpack(ARGV, i + 1, i + n) }
  i = i + 1 + n
  if string.sub(stream, -6) == ':queue' then redis.call('XACK', stream, ARG_group, unpack(ids)) end
  redis.call('XDEL', stream, unpack(ids))
end
return #KEYS
