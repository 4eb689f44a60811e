-- Record sent entries in ONE command (a single Redis; a cluster gets one XDEL per stream instead,
-- as its streams live in different slots): XDEL each from its stream, XACK first for a queue
-- stream (its entries are in the consumer group's pending list).
-- KEYS: the streams; ARGV: 1 the group, then for each stream the number of its ids, then the ids
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  local ids = { unpack(ARGV, i + 1, i + n) }
  i = i + 1 + n
  if string.sub(KEYS[k], -6) == ':queue' then redis.call('XACK', KEYS[k], ARGV[1], unpack(ids)) end
  redis.call('XDEL', KEYS[k], unpack(ids))
end
return #KEYS
