-- Billing steps (smsbot/billing/run.py runs `billing.charge_period`; the orders command's use-event
-- consumer runs `billing.charge_use`). The rules are BILLING.* (lua/billing_rules.lua, placed
-- before this file). Extra keys (ctx.key): ledger = this subscriber's charges.

local function charge_audit(code, state, field, fen, extra)
  local e = { ledger = field, fen = fen }
  for k, v in pairs(extra or {}) do e[k] = v end
  audit(code, state, state, 'charge', e)
end

-- One subscriber, one billing period: charge every monthly subscription due for it, exactly once.
-- args: {period, start, kinds = {code = kind}, prices = {code = fen}}; ctx.now = the run's time,
-- ctx.mo = the run id. ctx.extra = JSON {c = [charged codes], s = {code = skip reason}}.
handlers['billing.charge_period'] = function()
  local a = ctx.args
  local ledger = ctx.key.ledger
  local flat = redis.call('HGETALL', ctx.subs_key)
  local charged, skipped = {}, {}
  for i = 1, #flat, 2 do
    local code = flat[i]
    local rec = cjson.decode(flat[i + 1])
    local kind = a.kinds[code]
    if not kind then
      skipped[code] = 'unknown_service'
    elseif kind ~= 'monthly' then
      skipped[code] = 'on_demand'
    else
      local cancelled_at = nil
      if not LIVE[rec.state] then cancelled_at = rec.cancelled_at or 0 end
      local due = BILLING.due(rec)
      local why = BILLING.monthly_skip(rec.since or due, due, cancelled_at, a.start, ctx.now)
      local current_ok = why == nil
      local ok = current_ok
      if not ok and rec.owed then
        for _, o in ipairs(rec.owed) do
          if BILLING.monthly_skip(o.due, o.due, o.cancelled_at, a.start, ctx.now) == nil then ok = true break end
        end
      end
      local dirty = false
      if ok then
        local field = code .. ':' .. a.period
        local fen = a.prices[code]
        local entry = cjson.encode({ fen = fen, at = ctx.now, run = ctx.mo, period = a.period, order_id = rec.order_id })
        if redis.call('HSETNX', ledger, field, entry) == 1 then
          charged[#charged + 1] = code
          charge_audit(code, rec.state, field, fen, { period = a.period })
        else
          skipped[code] = 'already_charged'
        end
      else
        skipped[code] = why
      end
      if current_ok and rec.state == 'pending' then
        rec.state = 'active'
        rec.first_charged_at = ctx.now
        dirty = true
        audit(code, 'pending', 'active', 'first_charge', { order_id = rec.order_id or '' })
      end
      if rec.owed then -- an owed period before this one can never be charged again
        local keep = {}
        for _, o in ipairs(rec.owed) do
          if o.cancelled_at >= a.start then keep[#keep + 1] = o end
        end
        if #keep ~= #rec.owed then
          rec.owed = #keep > 0 and keep or nil
          dirty = true
        end
      end
      if dirty then sub_put(code, rec) end
    end
  end
  ctx.extra = cjson.encode({ c = charged, s = skipped })
  if #charged > 0 then return 'charged' end
  return 'nothing'
end

-- One on-demand use. args: {use_id, service, kind, fen}; ctx.now = the time of use.
handlers['billing.charge_use'] = function()
  local a = ctx.args
  local field = a.service .. ':use:' .. a.use_id
  if redis.call('HEXISTS', ctx.key.ledger, field) == 1 then return 'use_duplicate' end
  if a.kind ~= 'on-demand' then return 'use_not_on_demand' end
  local rec = sub_get(a.service)
  if not rec then return 'use_no_subscription' end
  local cancelled_at = nil
  if not LIVE[rec.state] then cancelled_at = rec.cancelled_at or 0 end
  local why = BILLING.use_skip(rec.since or 0, BILLING.due(rec), cancelled_at, ctx.now)
  if why then return why end
  redis.call('HSET', ctx.key.ledger, field,
    cjson.encode({ fen = a.fen, at = ctx.now, run = ctx.mo, use = a.use_id, order_id = rec.order_id }))
  charge_audit(a.service, rec.state, field, a.fen, { use = a.use_id })
  if rec.state == 'pending' then
    rec.state = 'active'
    rec.first_charged_at = ctx.now
    sub_put(a.service, rec)
    audit(a.service, 'pending', 'active', 'first_charge', { order_id = rec.order_id or '' })
  end
  return 'use_charged'
end
