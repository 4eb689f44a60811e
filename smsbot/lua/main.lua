-- smsbot MO script main: redelivery guard, run the handler, return the replies this sender sends.
-- The guard (KEY_guard) marks an MO handled whose deliver_sm_resp the SMSC is not yet known to have
-- read (smsbot.pipeline deletes it once it is): the token, then for each reply made its own flag,
-- entry id, template and data, all joined by NUL (own '1': the outbox entry this sender sends itself;
-- '0': a queue entry; no field can hold a NUL: JSON escapes it). The
-- same MO arriving while the guard holds ANOTHER token (a new session of this sender, or a
-- sibling) may be the SMSC's redelivery after a lost resp, or the person sending the same text
-- again: nothing is applied again, and the MO is answered with what it was answered before. A
-- reply still waiting to be sent is not copied (this sender's own entry is handed back, anyone
-- else's goes out from where it is); one already sent goes again as a new entry, so a person who
-- repeated themselves is never left unanswered (a true redelivery costs a reply sent twice,
-- counted as 'copies'). The same text arriving in the same session is handled as a new MO.
if ctx.guard_ttl > 0 then
  local guard = ctx.guard  -- read by the prelude's MGET
  if guard then
    local fields, from = {}, 1
    while true do
      local at = string.find(guard, '\0', from, true)
      fields[#fields + 1] = string.sub(guard, from, at and at - 1 or -1)
      if not at then break end
      from = at + 1
    end
    if fields[1] ~= ctx.token then
      local copies = 0
      for i = 2, #fields - 3, 4 do
        local own, id, tpl, data = fields[i] == '1', fields[i + 1], fields[i + 2], fields[i + 3]
        local e = redis.call('XRANGE', own and ctx.outbox or ctx.queue, id, id)[1]
        if not e then
          reply_encoded(tpl, data)
          copies = copies + 1
        elseif own then
          local f = {}
          for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
          if f.own == ctx.consumer then ctx.sent[#ctx.sent + 1] = { id, tpl, data } end
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
if ARG_delete_parts == '1' then redis.call('DEL', ctx.parts_key) end
if ctx.guard_ttl > 0 then
  ctx.answered[1] = ctx.token
  redis.call('SET', ctx.guard_key, table.concat(ctx.answered, '\0'), 'PX', ctx.guard_ttl)
end
return { outcome, ctx.sent, ctx.extra or false }
