-- Charge reminders, cancel by reply, and billing (commands/reminders.py renders; smsbot/billing.py runs).
--
-- A subscription created by an order is `pending` (awaiting its first charge) with
--   ordered_at, first_charge_due (= order time + grace), order_id, kind.
-- The rules, shared with smsbot/billing.py (verify) and tests/test_billing_model.py:
--   * cancelled before first_charge_due (any route: reply, 0000 menu, admin) -> never charged;
--   * a monthly subscription is charged for period P (at most once: ledger field <code>:<P>, HSETNX)
--     by a run at time T in P when first_charge_due <= T and it is live, or was cancelled at or
--     after both its due time and the start of P (a cancellation takes effect from the next period);
--   * an on-demand use at time U is charged (ledger field <code>:use:<id>) when the subscription
--     began by U, was past its grace at U and not cancelled by U. Uses inside the grace are free.
-- Extra keys (ctx.key): orders = order ids already applied, ledger = this subscriber's charges.
local RM = {}

function RM.due(rec)
  return rec.first_charge_due or rec.since or 0
end

-- audit() with extra fields (due, order id, ledger field, ...), same stream and base fields.
function RM.audit(code, old_state, new_state, reason, extra)
  local cmd = { 'XADD', ctx.audit_key, '*', 'msisdn', ctx.msisdn, 'service', code, 'old', old_state or 'none',
    'new', new_state, 'at', tostring(ctx.now), 'mo', ctx.mo, 'reason', reason or '' }
  for k, v in pairs(extra or {}) do
    cmd[#cmd + 1] = k
    cmd[#cmd + 1] = tostring(v)
  end
  redis.call(unpack(cmd))
end

-- The label of the period after the one holding `now`, from [[label, start_ms], ...] (sorted).
function RM.next_period(periods)
  if not periods then return nil end
  for i = #periods, 1, -1 do
    if periods[i][2] <= ctx.now then
      if periods[i + 1] then return periods[i + 1][1], periods[i + 1][2] end
      return nil
    end
  end
  return nil
end

-- Cancel one live subscription now. Returns how: 'free' (inside the grace: never charged),
-- 'next' (monthly, past the grace: this period is still charged, the next ones are not),
-- 'now' (on-demand past the grace: uses from now on are not charged).
function RM.cancel(code, rec, via, periods)
  local old = rec.state
  local how
  if rec.state == 'pending' and RM.due(rec) > ctx.now then -- 'active' = a run (maybe with a future --at) charged it
    how = 'free'
    rec.cancelled_before_charge = true
  elseif rec.kind == 'on-demand' then
    how = 'now'
  else
    how = 'next'
    local label, start = RM.next_period(periods)
    if start then
      rec.effective_from = start
      rec.effective_period = label
    end
  end
  rec.state = 'cancelled'
  rec.cancelled_at = ctx.now
  rec.cancel_via = via
  sub_put(code, rec)
  RM.audit(code, old, 'cancelled', via, { cancel = how, order_id = rec.order_id or '' })
  return how, rec.effective_period
end

function RM.sorted(list)
  table.sort(list, function(a, b)
    if (a.order or 0) ~= (b.order or 0) then return (a.order or 0) < (b.order or 0) end
    return a.code < b.code
  end)
  return list
end

-- An order event: create the pending subscription and queue the reminder. Idempotent by order id.
-- args: {order_id, service, kind, grace_ms, word}
handlers['order_placed'] = function()
  local a = ctx.args
  if redis.call('HEXISTS', ctx.key.orders, a.order_id) == 1 then return 'order_duplicate' end
  local code = a.service
  local rec = sub_get(code)
  local outcome
  if rec and LIVE[rec.state] then
    outcome = 'order_exists' -- already subscribed: no second subscription, no reminder
  else
    local old = rec and rec.state or nil
    -- A cancelled predecessor may still owe the period it was cancelled in: keep it for billing.
    local owed = {}
    if rec then
      for _, o in ipairs(rec.owed or {}) do owed[#owed + 1] = o end
      if rec.cancelled_at and rec.cancelled_at >= RM.due(rec) then
        owed[#owed + 1] = { due = RM.due(rec), cancelled_at = rec.cancelled_at }
      end
      while #owed > 12 do table.remove(owed, 1) end
    end
    local due = ctx.now + a.grace_ms
    local new = { state = 'pending', since = ctx.now, ordered_at = ctx.now, first_charge_due = due,
      order_id = a.order_id, order = next_order(), via = 'order', kind = a.kind }
    if #owed > 0 then new.owed = owed end
    sub_put(code, new)
    RM.audit(code, old, 'pending', 'order', { order_id = a.order_id, due = due, kind = a.kind })
    reply('reminder', { code = code, due = due, word = a.word })
    outcome = 'order_placed'
  end
  redis.call('HSET', ctx.key.orders, a.order_id, cjson.encode({ service = code, at = ctx.now, outcome = outcome, event = ctx.mo }))
  return outcome
end

-- A cancel word (TD, 取消, N, ...). args: {periods, validity_ms, keep_ms, late_ms, word}
handlers['reminder_cancel'] = function()
  local a = ctx.args
  local flat = redis.call('HGETALL', ctx.subs_key)
  local grace, late = {}, {}
  for i = 1, #flat, 2 do
    local rec = cjson.decode(flat[i + 1])
    if LIVE[rec.state] and rec.order_id then
      rec.code = flat[i]
      if rec.state == 'pending' and RM.due(rec) > ctx.now then
        grace[#grace + 1] = rec
      elseif (rec.ordered_at or rec.since or 0) >= ctx.now - a.late_ms then
        late[#late + 1] = rec
      end
    end
  end
  local cands = #grace > 0 and RM.sorted(grace) or RM.sorted(late)
  if #cands == 0 then
    reply('reminder_nothing', {})
    return 'cancel_nothing'
  end
  if #cands == 1 then
    local rec = cands[1]
    local code = rec.code
    rec.code = nil
    local how, nxt = RM.cancel(code, rec, 'reply', a.periods)
    reply('reminder_cancelled', { items = { { code = code, how = how, next = nxt } } })
    return 'cancelled_' .. how
  end
  local items, codes = {}, {}
  for i, rec in ipairs(cands) do
    items[i] = { code = rec.code, order_id = rec.order_id }
    codes[i] = rec.code
  end
  conv_put({ type = 'orders', items = items, exp = ctx.now + a.validity_ms, periods = a.periods, word = a.word }, a.keep_ms)
  reply('reminder_which', { items = codes, word = a.word })
  return 'cancel_ask'
end

-- The numeric answer to 'which order?'. Cancels exactly the chosen ones if they are still the same orders.
conversations['orders'] = function(conv)
  local a = ctx.args
  local n = #conv.items
  if ctx.now > conv.exp then
    if a.numbers then
      reply('orders_expired', { word = conv.word })
      return 'orders_expired'
    end
    return nil
  end
  if not a.numbers then
    reply('orders_invalid', { n = n })
    return 'orders_invalid'
  end
  for _, k in ipairs(a.numbers) do
    if k < 1 or k > n then
      reply('orders_invalid', { n = n })
      return 'orders_invalid'
    end
  end
  local done, already, seen = {}, {}, {}
  for _, k in ipairs(a.numbers) do
    if not seen[k] then
      seen[k] = true
      local item = conv.items[k]
      local rec = sub_get(item.code)
      if rec and LIVE[rec.state] and rec.order_id == item.order_id then
        local how, nxt = RM.cancel(item.code, rec, 'reply', conv.periods)
        done[#done + 1] = { code = item.code, how = how, next = nxt }
      else
        already[#already + 1] = item.code
      end
    end
  end
  reply('reminder_cancelled', { items = done, already = already })
  if #done > 0 then return 'cancelled_choice' end
  return 'already_cancelled'
end

-- Is a subscription incarnation (due, cancelled_at or nil) chargeable for the period starting at `start`, at ctx.now?
function RM.chargeable(due, cancelled_at, start)
  if due > ctx.now then return false, 'not_due' end
  if cancelled_at then
    if cancelled_at < due then return false, 'cancelled_before_first_charge' end
    if cancelled_at < start then return false, 'cancelled' end
  end
  return true, nil
end

function RM.charge_audit(code, state, field, fen, extra)
  local e = { ledger = field, fen = fen }
  for k, v in pairs(extra or {}) do e[k] = v end
  RM.audit(code, state, state, 'charge', e)
end

-- One subscriber, one billing period: charge every monthly subscription due for it, exactly once.
-- args: {period, start, kinds = {code = kind}, prices = {code = fen}}; ctx.now = the run's time,
-- ctx.mo = the run id. ctx.extra = JSON {c = [charged codes], s = {code = skip reason}}.
handlers['bill'] = function()
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
      local ok, why = RM.chargeable(RM.due(rec), cancelled_at, a.start)
      local current_ok = ok
      if not ok and rec.owed then
        for _, o in ipairs(rec.owed) do
          if RM.chargeable(o.due, o.cancelled_at, a.start) then ok = true break end
        end
      end
      local dirty = false
      if ok then
        local field = code .. ':' .. a.period
        local fen = a.prices[code]
        local entry = cjson.encode({ fen = fen, at = ctx.now, run = ctx.mo, period = a.period, order_id = rec.order_id })
        if redis.call('HSETNX', ledger, field, entry) == 1 then
          charged[#charged + 1] = code
          RM.charge_audit(code, rec.state, field, fen, { period = a.period })
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
        RM.audit(code, 'pending', 'active', 'first_charge', { order_id = rec.order_id or '' })
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
handlers['use_charge'] = function()
  local a = ctx.args
  local field = a.service .. ':use:' .. a.use_id
  if redis.call('HEXISTS', ctx.key.ledger, field) == 1 then return 'use_duplicate' end
  if a.kind ~= 'on-demand' then return 'use_not_on_demand' end
  local rec = sub_get(a.service)
  if not rec or (rec.since or 0) > ctx.now then return 'use_no_subscription' end
  if ctx.now < RM.due(rec) then return 'use_in_grace' end
  if not LIVE[rec.state] and (rec.cancelled_at or 0) <= ctx.now then return 'use_cancelled' end
  redis.call('HSET', ctx.key.ledger, field,
    cjson.encode({ fen = a.fen, at = ctx.now, run = ctx.mo, use = a.use_id, order_id = rec.order_id }))
  RM.charge_audit(a.service, rec.state, field, a.fen, { use = a.use_id })
  if rec.state == 'pending' then
    rec.state = 'active'
    rec.first_charged_at = ctx.now
    sub_put(a.service, rec)
    RM.audit(a.service, 'pending', 'active', 'first_charge', { order_id = rec.order_id or '' })
  end
  return 'use_charged'
end
