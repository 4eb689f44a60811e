-- CXZD: the itemized bill of one month, from this subscriber's own ledger (commands/bill renders it).
-- A charge belongs to the month holding its ledger time (`at`), exactly as `smsbot billing ledger`
-- lists it (smsbot/billing/ledger.py `statement` is the same rule in Python; the tests hold them together).
-- Extra keys (ctx.key): ledger = this subscriber's charges (<code>:<YYYY-MM> or <code>:use:<id> -> JSON {fen, at, ...}).
-- args: {period = 'YYYY-MM', start = ms, ['end'] = ms (exclusive), current = true|false}
--       or {bad = 'usage' | 'future', period = ...} when the month asked for is not one to answer

handlers['bill.query'] = function()
  local a = ctx.args
  if a.bad == 'usage' then
    reply('bill.usage', {})
    return 'bill_usage'
  elseif a.bad == 'future' then
    reply('bill.future', { period = a.period })
    return 'bill_future'
  end
  local flat = redis.call('HGETALL', ctx.key.ledger)
  local lines, order = {}, {}
  local total = 0
  for i = 1, #flat, 2 do
    local field = flat[i]
    local ok, rec = pcall(cjson.decode, flat[i + 1])
    local at = ok and tonumber(rec.at)
    if at and at >= a.start and at < a['end'] then
      local code = string.match(field, '^([^:]+):')
      local fen = tonumber(rec.fen) or 0
      local line = lines[code]
      if not line then
        line = { code, 0, 0, 0, at }  -- code, charges, fen, on-demand (1/0), first charge time
        lines[code] = line
        order[#order + 1] = line
      end
      line[2] = line[2] + 1
      line[3] = line[3] + fen
      if string.find(field, ':use:', 1, true) then line[4] = 1 end
      if at < line[5] then line[5] = at end
      total = total + fen
    end
  end
  table.sort(order, function(x, y)
    if x[5] ~= y[5] then return x[5] < y[5] end
    return x[1] < y[1]
  end)
  local items = {}
  for i, line in ipairs(order) do items[i] = { line[1], line[2], line[3], line[4] } end
  if #items == 0 then
    reply('bill.empty', { period = a.period, current = a.current, now = ctx.now })
    return 'bill_empty'
  end
  reply('bill.statement', { period = a.period, current = a.current, now = ctx.now, items = items, total = total })
  return 'bill_sent'
end
