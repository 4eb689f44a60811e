-- Orders: charge reminders and cancel by reply (commands/orders/__init__.py renders the replies).
-- The billing rules (BILLING.*, smsbot/lua/billing_rules.lua) are placed before this fragment.
-- Extra keys (ctx.key): orders = order ids already applied (idempotency).
local ORD = {}

-- The label and start of the period after the one holding `now`, from [[label, start_ms], ...] (sorted).
function ORD.next_period(periods)
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
function ORD.cancel(code, rec, via, periods)
  local old = rec.state
  local how
  if BILLING.in_grace(rec, ctx.now) then
    how = 'free'
    rec.cancelled_before_charge = true
  elseif rec.kind == 'on-demand' then
    how = 'now'
  else
    how = 'next'
    local label, start = ORD.next_period(periods)
    if start then
      rec.effective_from = start
      rec.effective_period = label
    end
  end
  rec.state = 'cancelled'
  rec.cancelled_at = ctx.now
  rec.cancel_via = via
  sub_put(code, rec)
  audit(code, old, 'cancelled', via, { cancel = how, order_id = rec.order_id or '' })
  return how, rec.effective_period
end

function ORD.sorted(list)
  table.sort(list, function(a, b)
    if (a.order or 0) ~= (b.order or 0) then return (a.order or 0) < (b.order or 0) end
    return a.code < b.code
  end)
  return list
end

-- An order event: create the pending subscription and queue the reminder. Idempotent by order id.
-- args: {order_id, service, kind, grace_ms, word}
handlers['orders.place'] = function()
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
      if rec.cancelled_at and rec.cancelled_at >= BILLING.due(rec) then
        owed[#owed + 1] = { due = BILLING.due(rec), cancelled_at = rec.cancelled_at }
      end
      while #owed > 12 do table.remove(owed, 1) end
    end
    local due = ctx.now + a.grace_ms
    local new = { state = 'pending', since = ctx.now, ordered_at = ctx.now, first_charge_due = due,
      order_id = a.order_id, order = next_order(), via = 'order', kind = a.kind }
    if #owed > 0 then new.owed = owed end
    sub_put(code, new)
    audit(code, old, 'pending', 'order', { order_id = a.order_id, due = due, kind = a.kind })
    reply('orders.reminder', { code = code, due = due, word = a.word })
    outcome = 'order_placed'
  end
  redis.call('HSET', ctx.key.orders, a.order_id, cjson.encode({ service = code, at = ctx.now, outcome = outcome, event = ctx.mo }))
  return outcome
end

-- A cancel word (TD, 取消, N, ...). args: {periods, validity_ms, keep_ms, late_ms, word}
handlers['orders.cancel'] = function()
  local a = ctx.args
  local flat = redis.call('HGETALL', ctx.subs_key)
  local grace, late = {}, {}
  for i = 1, #flat, 2 do
    local rec = cjson.decode(flat[i + 1])
    if LIVE[rec.state] and rec.order_id then
      rec.code = flat[i]
      if BILLING.in_grace(rec, ctx.now) then
        grace[#grace + 1] = rec
      elseif (rec.ordered_at or rec.since or 0) >= ctx.now - a.late_ms then
        late[#late + 1] = rec
      end
    end
  end
  local cands = #grace > 0 and ORD.sorted(grace) or ORD.sorted(late)
  if #cands == 0 then
    reply('orders.nothing', {})
    return 'cancel_nothing'
  end
  if #cands == 1 then
    local rec = cands[1]
    local code = rec.code
    rec.code = nil
    local how, nxt = ORD.cancel(code, rec, 'reply', a.periods)
    reply('orders.cancelled', { items = { { code = code, how = how, next = nxt } } })
    return 'cancelled_' .. how
  end
  local items, codes = {}, {}
  for i, rec in ipairs(cands) do
    items[i] = { code = rec.code, order_id = rec.order_id }
    codes[i] = rec.code
  end
  conv_put({ type = 'orders', items = items, exp = ctx.now + a.validity_ms, periods = a.periods, word = a.word }, a.keep_ms)
  reply('orders.which', { items = codes, word = a.word })
  return 'cancel_ask'
end

-- The numeric answer to 'which order?'. Cancels exactly the chosen ones if they are still the same orders.
conversations['orders'] = function(conv)
  local a = ctx.args
  local n = #conv.items
  if ctx.now > conv.exp then
    if a.numbers then
      reply('orders.expired', { word = conv.word })
      return 'orders_expired'
    end
    return nil
  end
  if not a.numbers then
    reply('orders.invalid', { n = n })
    return 'orders_invalid'
  end
  for _, k in ipairs(a.numbers) do
    if k < 1 or k > n then
      reply('orders.invalid', { n = n })
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
        local how, nxt = ORD.cancel(item.code, rec, 'reply', conv.periods)
        done[#done + 1] = { code = item.code, how = how, next = nxt }
      else
        already[#already + 1] = item.code
      end
    end
  end
  reply('orders.cancelled', { items = done, already = already })
  if #done > 0 then return 'cancelled_choice' end
  return 'already_cancelled'
end
