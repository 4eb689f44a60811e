-- smsbot MO script main: redelivery guard, run the handler, return the replies this sender sends.
-- The guard (KEYS[3]) marks an MO handled whose deliver_sm_resp the SMSC is not yet known to have
-- read (smsbot.pipeline deletes it once it is): "<token>|<reply entry ids>". The same MO arriving while
-- the guard holds ANOTHER token (a new session of this sender, or a sibling) is the SMSC's
-- redelivery after a lost resp: nothing is applied again, and the replies it made that still wait
-- for this sender are handed back (they may have been stranded by a lost Redis reply). The same
-- text arriving in the same session is a person repeating themselves: it is handled again.
if ctx.guard_ttl > 0 then
  local guard = redis.call('GET', ctx.guard_key)
  if guard then
    local token, ids = string.match(guard, '^([^|]*)|(.*)$')
    if token ~= ctx.token then
      for id in string.gmatch(ids or '', '[^,]+') do
        local e = redis.call('XRANGE', ctx.outbox, id, id)[1]
        if e then
          local f = {}
          for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
          if f.own == ctx.consumer then ctx.sent[#ctx.sent + 1] = { id, f.tpl, f.data } end
        end
      end
      return { 'duplicate', ctx.sent, false }
    end
  end
end
local h = handlers[ctx.handler]
if not h then
  return redis.error_reply('unknown handler ' .. ctx.handler)
end
local ok, outcome = pcall(h)
if not ok then
  return redis.error_reply('handler ' .. ctx.handler .. ' failed: ' .. tostring(type(outcome) == 'table' and outcome.err or outcome))
end
outcome = outcome or 'ok'
if ctx.live_dirty then write_live_index() end
if ARGV[12] == '1' then redis.call('DEL', ctx.parts_key) end
if ctx.guard_ttl > 0 then
  local ids = {}
  for i, s in ipairs(ctx.sent) do ids[i] = s[1] end
  redis.call('SET', ctx.guard_key, ctx.token .. '|' .. table.concat(ids, ','), 'PX', ctx.guard_ttl)
end
return { outcome, ctx.sent, ctx.extra or false }
