-- smsbot MO script main: redelivery guard, run the handler, return the replies this sender sends.
-- The guard is one SET NX: a redelivered MO finds the key and changes nothing. If the handler
-- fails, the key is removed again so the SMSC's redelivery is handled, not taken for a duplicate.
if ctx.dedup_ttl > 0 and not redis.call('SET', ctx.dedup_key, '1', 'NX', 'EX', ctx.dedup_ttl) then
  return { 'duplicate', ctx.sent, false }
end
local h = handlers[ctx.handler]
if not h then
  if ctx.dedup_ttl > 0 then redis.call('DEL', ctx.dedup_key) end
  return redis.error_reply('unknown handler ' .. ctx.handler)
end
local ok, outcome = pcall(h)
if not ok then
  if ctx.dedup_ttl > 0 then redis.call('DEL', ctx.dedup_key) end
  return redis.error_reply('handler ' .. ctx.handler .. ' failed: ' .. tostring(type(outcome) == 'table' and outcome.err or outcome))
end
outcome = outcome or 'ok'
if ctx.live_dirty then write_live_index() end
if ARGV[12] == '1' then redis.call('DEL', ctx.parts_key) end
return { outcome, ctx.sent, ctx.extra or false }
