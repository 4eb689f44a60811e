-- smsbot MO script main: redelivery guard, run the handler, store the MO state, return the replies
-- this sender sends.
-- Each handled MO leaves a guard in the subscriber's MO state at the short code (the form
-- smsbot.records declares): its session's token, its batch number in that session, its
-- fingerprint (ARG_guard_fp) and what it was answered (per reply its own flag, entry id, template
-- and data; own '1': the outbox entry this sender sends itself, '0': a queue entry). A guard holds
-- until the SMSC is known to have read the MO's resp: until its session's watermark reaches its
-- batch (this session's comes in ARG_mark; another's is read from KEY_marks, written by
-- smsbot.pipeline, only when this MO meets its guard, or when many such guards pile up), or until
-- it expires (ARG_guard_ms). The same MO arriving while a guard of ANOTHER session holds (a new
-- session of this sender, or a sibling) may be the SMSC's redelivery after a lost resp, or the
-- person sending the same text again: nothing is applied again, and the MO is answered with what it
-- was answered before. A reply still waiting to be sent is not copied (this sender's own entry is
-- handed back, anyone else's goes out from where it is); one already sent goes again as a new
-- entry, so a person who repeated themselves is never left unanswered (a true redelivery costs a
-- reply sent twice, counted as 'copies'). The same text arriving in the same session is handled as
-- a new MO. A guard kept by the version before (KEY_old_guard: <token> { NUL <reply> }) counts the same.
local FOREIGN_KEPT = 4  -- other sessions' guards kept unchecked; beyond, their watermarks are read and the confirmed go

-- The MO's replies as they were answered before: `text` holds, from field `first` on (fields
-- separated by `sep`), own flag, entry id, template and data per reply. Defined when needed (rare).
local function answer_again(text, sep, first)
  local fields, from = {}, 1
  while true do
    local at = string.find(text, sep, from, true)
    fields[#fields + 1] = string.sub(text, from, at and at - 1 or -1)
    if not at then break end
    from = at + 1
  end
  local copies = 0
  for i = first, #fields - 3, 4 do
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

-- The guards read, in place: which stay (records kept as they are, and the latest time one is
-- kept), and another session's guard of this MO, unless its resp is known read.
local kept, kept_until = {}, 0
local met  -- { record, token, batch }
if guards_at > 0 then
  local own_mark, foreign, from = tonumber(ARG_mark), nil, guards_at
  while from do
    local at = string.find(state_raw, STATE_REC, from, true)
    local _, _, u, b, t, fp = string.find(state_raw, '^(%d+)%z(%d+)%z([^%z]*)%z([^%z]*)', from)
    u, b = tonumber(u), tonumber(b)
    if u and u > ctx.now then
      if t ~= ctx.token then
        local rec = string.sub(state_raw, from, at and at - 1 or -1)
        if fp == ARG_guard_fp then
          met = { rec, t, b }
        else
          foreign = foreign or {}
          foreign[#foreign + 1] = { rec, t, b, u }
        end
      elseif b > own_mark and fp ~= ARG_guard_fp then  -- this session's: kept until confirmed; the same text is a new MO
        kept[#kept + 1] = string.sub(state_raw, from, at and at - 1 or -1)
        if u > kept_until then kept_until = u end
      end
    end
    from = at and at + 1
  end
  if met or foreign then  -- another session's guards: their watermarks, read when needed
    local function batch_of(mark) return tonumber(string.match(mark, '^%d+')) end  -- smsbot.records.mark_value
    local ask = {}
    if met then ask[1] = met[2] end
    local checked = foreign and #foreign > FOREIGN_KEPT
    if checked then for _, g in ipairs(foreign) do ask[#ask + 1] = g[2] end end
    local marks = #ask > 0 and redis.call('HMGET', KEY_marks, unpack(ask)) or {}
    local at = met and 1 or 0
    if met and marks[1] and batch_of(marks[1]) >= met[3] then met = nil end  -- its resp was read: a new MO
    for i, g in ipairs(foreign or {}) do
      local m = checked and marks[at + i]
      if not (m and batch_of(m) >= g[3]) then
        kept[#kept + 1] = g[1]
        if g[4] > kept_until then kept_until = g[4] end
      end
    end
  end
end
if ctx.guard_ttl > 0 then
  if met then return answer_again(met[1], STATE_FIELD, 5) end
  local old = ctx.old_guard
  if old and string.sub(old, 1, (string.find(old, '\0', 1, true) or 0) - 1) ~= ctx.token then
    return answer_again(old, '\0', 2)
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
if ctx.live_dirty then update_live_index() end
if ARG_delete_parts == '1' then redis.call('DEL', ctx.parts_key) end

-- The MO state in ONE SET: the conversation, the guards kept and this MO's guard.
if ctx.guard_ttl > 0 then
  local guard_until = ctx.now + ctx.guard_ttl
  local rec = guard_until .. STATE_FIELD .. ARG_batch .. STATE_FIELD .. ctx.token .. STATE_FIELD .. ARG_guard_fp
  if #ctx.answered > 0 then rec = rec .. STATE_FIELD .. table.concat(ctx.answered, STATE_FIELD) end
  kept[#kept + 1] = rec
  if guard_until > kept_until then kept_until = guard_until end
end
if ctx.guard_ttl > 0 or ctx.conv_changed then
  local conv = conv_text()
  local last = kept_until
  if conv and conv_until > last then last = conv_until end
  if last > ctx.now then
    local out = { STATE_MARK, conv and conv_until or 0, STATE_FIELD, conv or '' }
    for _, rec in ipairs(kept) do
      out[#out + 1] = STATE_REC
      out[#out + 1] = rec
    end
    redis.call('SET', KEY_state, table.concat(out), 'PX', last - ctx.now)
  elseif state_raw then
    redis.call('DEL', KEY_state)
  end
end
return { outcome, ctx.sent, ctx.extra or false }
