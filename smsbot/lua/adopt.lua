-- Move orphaned outbox entries (their sender died) to the queue stream, where any live sender reads
-- them through the consumer group. Atomic per entry: an entry is moved at most once.
-- KEYS: 1 outbox stream, 2 queue stream (same hash tag). ARGV: entry ids.
local moved = 0
for _, id in ipairs(ARGV) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] and redis.call('XDEL', KEYS[1], id) == 1 then
    local f, out = e[1][2], {}
    for i = 1, #f, 2 do
      if f[i] ~= 'own' then
        out[#out + 1] = f[i]
        out[#out + 1] = f[i + 1]
      end
    end
    out[#out + 1] = 'adopted'
    out[#out + 1] = id
    redis.call('XADD', KEYS[2], '*', unpack(out))
    moved = moved + 1
  end
end
return moved
