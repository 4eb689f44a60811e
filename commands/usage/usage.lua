-- Data usage: reports from the usage stream and the CXLL query (commands/usage/__init__.py renders the
-- replies and documents the rules).
-- ctx.key.usage = hash smsbot:{N}:usage:<msisdn> (declared by name, see Store.mo_call extra_keys):
--   cycle, used (bytes, the highest running total seen this cycle), plan, quota (bytes),
--   ths (JSON, bytes), rate (fen/MB), at (ms, time of the report behind `used`), mo (its event id),
--   'alerted:<plan>:<threshold bytes>' = ms the threshold was marked as alerted.
-- args for 'usage.report': {plan, used, cycle, quota, ths, rate, at}
-- args for 'usage.query':   {cycle} (the current cycle)

local function usage_n(x) return string.format('%.0f', x) end

local function usage_state()
  local flat = redis.call('HGETALL', ctx.key.usage)
  if #flat == 0 then return nil end
  local st = { alerted = {} }
  for i = 1, #flat, 2 do
    local k = flat[i]
    if string.sub(k, 1, 8) == 'alerted:' then
      st.alerted[string.sub(k, 9)] = true
    else
      st[k] = flat[i + 1]
    end
  end
  st.used = tonumber(st.used) or 0
  st.quota = tonumber(st.quota) or 0
  st.rate = tonumber(st.rate) or 0
  return st
end

-- One usage report. Safe against duplicates, reordering and several instances: the report is a
-- running total, so only a higher total of the current cycle changes anything; alert marks are
-- set in the same atomic step as the alert itself.
handlers['usage.report'] = function()
  local a = ctx.args
  local key = ctx.key.usage
  local st = usage_state()
  if st and st.cycle then
    if a.cycle < st.cycle then return 'old_cycle' end              -- late report of a past cycle
    if a.cycle == st.cycle and a.used <= st.used then return 'not_newer' end -- duplicate / reordered
    if a.cycle > st.cycle then                                      -- a new cycle starts clean
      redis.call('DEL', key)
      st = nil
    end
  end
  redis.call('HSET', key, 'cycle', a.cycle, 'used', usage_n(a.used), 'plan', a.plan, 'quota', usage_n(a.quota),
    'ths', cjson.encode(a.ths), 'rate', usage_n(a.rate), 'at', usage_n(a.at), 'mo', ctx.mo)
  local ths = {}
  for i, t in ipairs(a.ths) do ths[i] = t end
  table.sort(ths, function(x, y) return x > y end)
  local left = a.quota - a.used
  local lowest
  for _, t in ipairs(ths) do
    if left <= t then
      lowest = t
      redis.call('HSETNX', key, 'alerted:' .. a.plan .. ':' .. usage_n(t), usage_n(ctx.now))
    end
  end
  if lowest == nil then return 'updated' end
  -- A jump across several thresholds: one alert, for the lowest; the higher ones are only marked.
  -- Nothing when the lowest was already alerted (then every higher one was reached before too).
  if st and st.alerted[a.plan .. ':' .. usage_n(lowest)] then return 'updated' end
  reply('usage.alert', { plan = a.plan, used = a.used, quota = a.quota, t = lowest, rate = a.rate, at = a.at, cycle = a.cycle })
  ctx.extra = usage_n(lowest)
  return 'alerted'
end

-- CXLL: used and remaining data of the current cycle.
handlers['usage.query'] = function()
  local st = usage_state()
  if not st or not st.plan then
    reply('usage.no_plan', {})
    return 'usage_no_plan'
  end
  local used, cycle = st.used, st.cycle
  if ctx.args.cycle and st.cycle < ctx.args.cycle then
    used, cycle = 0, ctx.args.cycle -- no report of this cycle yet: nothing used
  end
  reply('usage.report', { plan = st.plan, used = used, quota = st.quota, rate = st.rate, cycle = cycle })
  return 'usage_report'
end
