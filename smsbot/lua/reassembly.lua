-- Parts of a long MO wait in a hash (KEY_parts) until all are in, in any order.
-- args: {seq, total, hex, timeout_ms}: `hex` is the part's raw user data (UDH stripped) in hex; the
-- joined hex goes back to the dispatcher, which decodes the whole message once (a GSM-7 escape or
-- a UTF-16 surrogate pair split across two parts survives). The parts are NOT deleted here: the script that handles
-- the assembled message deletes them (ARG_delete_parts = '1') atomically with its effect, so a crash in
-- between leaves the parts for the SMSC's redelivery of the last one.
handlers['part'] = function()
  local a = ctx.args
  local key = ctx.parts_key
  redis.call('HSET', key, tostring(a.seq), a.hex)
  redis.call('HSETNX', key, 'total', tostring(a.total))
  redis.call('PEXPIRE', key, a.timeout_ms)
  local total = tonumber(redis.call('HGET', key, 'total'))
  if redis.call('HLEN', key) - 1 < total then return 'part_stored' end
  local pieces = {}
  for i = 1, total do
    local p = redis.call('HGET', key, tostring(i))
    if not p then return 'part_stored' end
    pieces[i] = p
  end
  ctx.extra = table.concat(pieces)
  return 'part_complete'
end
