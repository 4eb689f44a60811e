-- smsbot MO script main: redelivery guard, run the handler, return the replies this sender sends.
local outcome
if ctx.dedup_ttl > 0 then
  local prev = redis.call('GET', ctx.dedup_key)
  if prev then outcome = 'duplicate' end
end
if not outcome then
  local h = handlers[ctx.handler]
  if not h then return redis.error_reply('unknown handler ' .. ctx.handler) end
  outcome = h() or 'ok'
  if ARGV[12] == '1' then redis.call('DEL', ctx.parts_key) end
  if ctx.dedup_ttl > 0 then
    redis.call('SET', ctx.dedup_key, outcome, 'EX', ctx.dedup_ttl)
  end
end
return { outcome, ctx.sent, ctx.extra or false }
