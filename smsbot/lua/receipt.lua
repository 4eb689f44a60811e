-- A delivery receipt: find the MT part it belongs to among those sent under its message id.
-- SMSCs reuse message ids (after a restart, or by design), so the id alone may name several MTs:
-- the receipt goes to the most recent one sent on the same bind that has no receipt yet; failing
-- that (a repeated receipt), to the most recent on that bind; failing that it is kept apart.
-- KEY, ARG: smsbot.steps.RECEIPT
local n = redis.call('LLEN', KEY_records)
local again = nil
for i = n - 1, 0, -1 do
  local rec = cjson.decode(redis.call('LINDEX', KEY_records, i))
  if rec.bind == nil or rec.bind == ARG_bind then
    if rec.receipt_at == nil then
      again = i
      break
    end
    if again == nil then again = i end
  end
end
if again == nil then
  redis.call('SET', KEY_unmatched, cjson.encode({ state = ARG_state, err = ARG_err, receipt_at = ARG_at, bind = ARG_bind }),
    'EX', tonumber(ARG_ttl))
  return 'unmatched'
end
local rec = cjson.decode(redis.call('LINDEX', KEY_records, again))
rec.state, rec.err, rec.receipt_at = ARG_state, ARG_err, ARG_at
redis.call('LSET', KEY_records, again, cjson.encode(rec))
return 'matched'
