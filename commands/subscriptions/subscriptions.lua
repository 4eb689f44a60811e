-- 0000 menu and numeric-reply cancel (commands/subscriptions/__init__.py renders the replies).
-- The conversation type stays 'menu' (stored in Redis by every version; see legacy_conversations).
-- args for 'subscriptions.menu': {validity_ms, keep_ms, max_items, on_demand = {codes} | nil}
-- args for 'reply': {numbers = {..} | nil, text = '...'} (dispatched to conversations[conv.type])

handlers['subscriptions.menu'] = function()
  local a = ctx.args
  local n, items = live_index()
  if n == 0 then
    conv_del()
    reply('subscriptions.empty', {})
    return 'menu_empty'
  end
  -- monthly services first, then on-demand ones, each under its own heading (rendered in Python):
  -- the stored menu holds the same order, so the numbers shown are the numbers that cancel
  if a.on_demand then
    local any = false
    for _, code in ipairs(a.on_demand) do
      if string.find(items, '"' .. code .. '"', 1, true) then any = true break end
    end
    if any then
      local od = {}
      for _, code in ipairs(a.on_demand) do od[code] = true end
      local monthly, later = {}, {}
      for _, code in ipairs(cjson.decode(items)) do
        if od[code] then later[#later + 1] = code else monthly[#monthly + 1] = code end
      end
      for _, code in ipairs(later) do monthly[#monthly + 1] = code end
      items = cjson.encode(monthly)
    end
  end
  local truncated = false
  if n > a.max_items then
    local shown = {}
    for i, code in ipairs(cjson.decode(items)) do
      if i > a.max_items then break end
      shown[i] = code
    end
    items, truncated = cjson.encode(shown), true
  end
  -- both JSON texts are built around the index's JSON list: no record is decoded or encoded here
  local exp = ctx.now + a.validity_ms
  conv_put_encoded('{"type":"menu","exp":' .. exp .. ',"items":' .. items .. '}', exp, a.keep_ms)
  reply_encoded('subscriptions.menu', '{"items":' .. items .. ',"truncated":' .. tostring(truncated) .. ',"total":' .. n .. '}')
  return 'menu_sent'
end

-- A reply while a menu conversation exists. Decides from state alone whether the numbers cancel.
conversations['menu'] = function(conv)
  local a = ctx.args
  local n = #conv.items
  if ctx.now > conv.exp then
    if a.numbers then
      reply('subscriptions.expired', {})
      return 'menu_expired'
    end
    return nil -- not for us: an expired menu does not claim free text
  end
  if not a.numbers then
    reply('subscriptions.invalid', { n = n })
    return 'menu_invalid'
  end
  for _, k in ipairs(a.numbers) do
    if k < 1 or k > n then
      reply('subscriptions.invalid', { n = n, bad = k })
      return 'menu_invalid'
    end
  end
  local cancelled, already, seen = {}, {}, {}
  for _, k in ipairs(a.numbers) do
    if not seen[k] then
      seen[k] = true
      local code = conv.items[k]
      local rec = sub_get(code)
      if rec and LIVE[rec.state] then
        local old = rec.state
        rec.state = 'cancelled'
        rec.cancelled_at = ctx.now
        rec.cancel_via = 'menu'
        sub_put(code, rec)
        audit(code, old, 'cancelled', 'menu')
        cancelled[#cancelled + 1] = code
      else
        already[#already + 1] = code
      end
    end
  end
  reply('subscriptions.cancelled', { cancelled = cancelled, already = already })
  if #cancelled > 0 then return 'cancelled' end
  return 'already_cancelled'
end

-- Ops and testers (smsbot subs add): subscribe, no reply.
handlers['subscriptions.admin_subscribe'] = function()
  local code = ctx.args.service
  local rec = sub_get(code)
  if rec and LIVE[rec.state] then return 'exists' end
  local old = rec and rec.state or nil
  sub_put(code, { state = 'active', since = ctx.now, order = next_order(), via = ctx.args.via or 'admin' })
  audit(code, old, 'active', ctx.args.via or 'admin')
  return 'added'
end

handlers['subscriptions.admin_unsubscribe'] = function()
  local code = ctx.args.service
  local rec = sub_get(code)
  if not rec or not LIVE[rec.state] then return 'absent' end
  local old = rec.state
  rec.state = 'cancelled'
  rec.cancelled_at = ctx.now
  rec.cancel_via = 'admin'
  sub_put(code, rec)
  audit(code, old, 'cancelled', 'admin')
  return 'removed'
end
