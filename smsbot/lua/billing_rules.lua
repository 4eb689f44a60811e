-- The billing rules: THE definition, used by the billing steps (lua/billing.lua), the orders
-- command (commands/orders/orders.lua: is a cancel free?) and by `smsbot billing verify`, which
-- evaluates these same functions in Redis (smsbot/billing/rules.py, `Rules`). Pure functions of their
-- arguments (times in ms since the epoch); nothing here reads a key.
--
-- A subscription created by an order is `pending` (awaiting its first charge) with ordered_at,
-- first_charge_due (= order time + grace), order_id, kind; one added by an operator is due at once.
--   * cancelled before its first charge is due (reply, 0000 menu, admin) -> never charged;
--   * a monthly subscription owes the period starting `start` at the time `at` of a billing run in
--     it when it began by `at`, its first charge was due by `at`, and it is live or was cancelled
--     at or after both its due time and `start` (a cancellation takes effect from the next period);
--     it is charged at most once per period (ledger field <code>:<YYYY-MM>, HSETNX);
--   * an on-demand use at `at` is charged (ledger field <code>:use:<id>) when the subscription
--     began by `at`, was past its grace at `at` and not cancelled by `at`. Uses inside the grace are free.
local BILLING = {}

-- When the first charge of a subscription record is due.
function BILLING.due(rec)
  return rec.first_charge_due or rec.since or 0
end

-- Inside the grace period at `now`: a cancel now is free (the subscription is never charged).
function BILLING.in_grace(rec, now)
  return rec.state == 'pending' and BILLING.due(rec) > now  -- 'active': a run (maybe with a future --at) charged it
end

-- nil when a monthly subscription (began `since`, first charge due `due`, cancelled at
-- `cancelled_at` or nil/false if live) owes the period starting `start` at time `at`; else why not.
function BILLING.monthly_skip(since, due, cancelled_at, start, at)
  if since > at or due > at then return 'not_due' end
  if cancelled_at then
    if cancelled_at < due then return 'cancelled_before_first_charge' end
    if cancelled_at < start then return 'cancelled' end
  end
  return nil
end

-- nil when a use at `at` of an on-demand subscription (since, due, cancelled_at as above) is
-- charged; else why not.
function BILLING.use_skip(since, due, cancelled_at, at)
  if since > at then return 'use_no_subscription' end
  if at < due then return 'use_in_grace' end
  if cancelled_at and cancelled_at <= at then return 'use_cancelled' end
  return nil
end
