-- A delivery receipt: find the MT part it belongs to among those sent under its message id.
-- SMSCs reuse message ids (after a restart, or by design), so the id alone may name several MTs:
-- the receipt goes to the most recent one sent on the same bind that has no receipt yet; failing
-- that (a repeated receipt), to the most recent on that bind; failing that it is kept apart.
-- KEYS: 1 mt:{id} list of JSON records, 2 mt:{id}:dlr (a receipt that matched no record)
-- ARGV: 1 bind, 2 state, 3 err, 4 receipt time (ms), 5 ttl (s)
local n = redis.call('LLEN', KEYS[1])
local again = nil
for i = n - 1, 0, -1 do
  local rec = cjson.decode(redis.call('LINDEX', KEYS[1], i))
  if rec.bind == nil or rec.bind == ARGV[1] then
    if rec.receipt_at == nil then
      again = i
      break
    end
    if again == nil then again = i end
  end
end
if again == nil then
  redis.call('SET', KEYS[2], cjson.encode({ state = ARGV[2], err = ARGV[3], receipt_at = ARGV[4], bind = ARGV[1] }),
    'EX', tonumber(ARGV[5]))
  return 'unmatched'
end
local rec = cjson.decode(redis.call('LINDEX', KEYS[1], again))
rec.state, rec.err, rec.receipt_at = ARGV[2], ARGV[3], ARGV[4]
redis.call('LSET', KEYS[1], again, cjson.encode(rec))
return 'matched'
