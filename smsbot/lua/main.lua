-- smsbot MO script main: redelivery guard, run the handler, return the replies this sender sends.
-- The guard (KEY.guard) marks an MO handled whose deliver_sm_resp the SMSC is not yet known to have
-- read (smsbot.pipeline deletes it once it is): "<token>|<JSON list of the replies made: {own, entry
-- id, template, data}>" (own 1: the outbox entry this sender sends itself; 0: a queue entry). The
-- same MO arriving while the guard holds ANOTHER token (a new session of this sender, or a
-- sibling) may be the SMSC's redelivery after a lost resp, or the person sending the same text
-- again: nothing is applied again, and the MO is answered with what it was answered before. A
-- reply still waiting to be sent is not copied (this sender's own entry is handed back, anyone
-- else's goes out from where it is); one already sent goes again as a new entry, so a person who
-- repeated themselves is never left unanswered (a true redelivery costs a reply sent twice,
-- counted as 'copies'). The same text arriving in the same session is handled as a new MO.
if ctx.guard_ttl > 0 then
  local guard = redis.call('GET', ctx.guard_key)
  if guard then
    local token, made = string.match(guard, '^([^|]*)|(.*)$')
    if token ~= ctx.token then
      local copies = 0
      local ok, answered = pcall(cjson.decode, made or '')
      for _, r in ipairs(ok and type(answered) == 'table' and answered or {}) do
        local e = redis.call('XRANGE', r[1] == 1 and ctx.outbox or ctx.queue, r[2], r[2])[1]
        if not e then
          reply_encoded(r[3], r[4])
          copies = copies + 1
        elseif r[1] == 1 then
          local f = {}
          for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
          if f.own == ctx.consumer then ctx.sent[#ctx.sent + 1] = { r[2], r[3], r[4] } end
        end
      end
      return { 'redelivered', ctx.sent, tostring(copies) }
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
if ARG.delete_parts == '1' then redis.call('DEL', ctx.parts_key) end
if ctx.guard_ttl > 0 then
  redis.call('SET', ctx.guard_key, ctx.token .. '|' .. (#ctx.answered > 0 and cjson.encode(ctx.answered) or '[]'),
    'PX', ctx.guard_ttl)
end
return { outcome, ctx.sent, ctx.extra or false }
