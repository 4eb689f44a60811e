-- smsbot MO script main: redelivery guard, run the handler, then pick up outbox entries to send.
local outcome
if ctx.dedup_key ~= '' and ctx.dedup_ttl > 0 then
  local prev = redis.call('GET', ctx.dedup_key)
  if prev then outcome = 'duplicate' end
end
if not outcome then
  local h = handlers[ctx.handler]
  if not h then return redis.error_reply('unknown handler ' .. ctx.handler) end
  outcome = h() or 'ok'
  if ARGV[12] == '1' then redis.call('DEL', KEYS[6]) end
  if ctx.dedup_key ~= '' and ctx.dedup_ttl > 0 then
    redis.call('SET', ctx.dedup_key, outcome, 'EX', ctx.dedup_ttl)
  end
end
local entries = {}
if ctx.consumer ~= '' and ctx.read_count > 0 then
  local res = redis.pcall('XREADGROUP', 'GROUP', ctx.group, ctx.consumer, 'COUNT', ctx.read_count, 'STREAMS', ctx.outbox, '>')
  if type(res) == 'table' and res.err then
    if string.find(res.err, 'NOGROUP') then
      redis.call('XGROUP', 'CREATE', ctx.outbox, ctx.group, '0', 'MKSTREAM')
      res = redis.call('XREADGROUP', 'GROUP', ctx.group, ctx.consumer, 'COUNT', ctx.read_count, 'STREAMS', ctx.outbox, '>')
    else
      return res
    end
  end
  if res then entries = res[1][2] end
end
return { outcome, entries, ctx.extra or false }
