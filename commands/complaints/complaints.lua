-- Complaints (TS / 投诉, TSCX) and customer care's answer (commands/complaints renders the replies).
-- Extra keys (ctx.key), all with the subscriber's hash tag:
--   tickets        zset  this subscriber's ticket ids -> time opened (TSCX, the daily limit)
--   ticket_records hash  shard: ticket id -> JSON record {id, msisdn, sc, lang, text (as typed),
--                        cut, opened, due, state = open|resolved, mo, ref = {menu?, charge?},
--                        resolved_at, answer, by}
--   ticket_all     zset  shard: ticket id -> time opened (listing)
--   ticket_due     zset  shard: OPEN ticket ids -> promised answer time (overdue = due < now)
--   ticket_seq     string shard: the last ticket number of this shard
--   ledger         hash  this subscriber's charges (the ticket refers to the latest)
-- A ticket number is <shard's sequence number><shard, zero-padded to `width` digits>, so it is
-- unique across shards and names the shard it lives in (smsbot tickets show N finds it at once).
-- Every change is audited (shard audit stream, field `ticket`; billing verify skips those entries).

local function ticket_id(seq, width)
  local shard = tonumber(string.match(ctx.subs_key, '{(%d+)}')) or 0
  return tostring(seq) .. string.format('%0' .. width .. 'd', shard)
end

-- What the subscriber saw last: this short code's open (or lately expired) menu or order list,
-- and their latest charge.
local function ticket_ref()
  local ref = {}
  local conv = conv_get()
  if conv and conv.items then ref.menu = { type = conv.type, items = conv.items, exp = conv.exp } end
  local flat = redis.call('HGETALL', ctx.key.ledger)
  local last
  for i = 1, #flat, 2 do
    local ok, rec = pcall(cjson.decode, flat[i + 1])
    if ok and type(rec) == 'table' and tonumber(rec.at) and (not last or tonumber(rec.at) > last.at) then
      last = { field = flat[i], fen = rec.fen, at = tonumber(rec.at) }
    end
  end
  if last then ref.charge = last end
  return ref
end

-- TS <text>. args: {text (as typed), cut (true: text was cut to max_chars), handling_ms, hours,
-- max_per_day, day_start (ms: today's start), width}
handlers['complaints.open'] = function()
  local a = ctx.args
  if a.text == nil or a.text == '' then
    reply('complaints.usage', {})
    return 'ticket_usage'
  end
  if redis.call('ZCOUNT', ctx.key.tickets, a.day_start, '+inf') >= a.max_per_day then
    reply('complaints.limit', { max = a.max_per_day })
    return 'ticket_limited'
  end
  local id = ticket_id(redis.call('INCR', ctx.key.ticket_seq), a.width)
  local due = ctx.now + a.handling_ms
  local rec = { id = id, msisdn = ctx.msisdn, sc = ctx.short_code, lang = ctx.lang, text = a.text, opened = ctx.now,
    due = due, state = 'open', mo = ctx.mo, ref = ticket_ref() }
  if a.cut then rec.cut = true end
  redis.call('HSET', ctx.key.ticket_records, id, cjson.encode(rec))
  redis.call('ZADD', ctx.key.ticket_all, ctx.now, id)
  redis.call('ZADD', ctx.key.ticket_due, due, id)
  redis.call('ZADD', ctx.key.tickets, ctx.now, id)
  audit('', 'none', 'open', 'ticket_open', { ticket = id, due = due })
  reply('complaints.opened', { id = id, due = due, hours = a.hours })
  ctx.extra = id
  return 'ticket_opened'
end

-- TSCX [number]. args: {id = '...' | nil, limit, bad = true when the argument is not a number}
handlers['complaints.query'] = function()
  local a = ctx.args
  if a.bad then
    reply('complaints.query_usage', {})
    return 'ticket_query_usage'
  end
  if a.id then
    -- only a ticket of this subscriber's own list: another subscriber's number is "not found"
    local raw = redis.call('ZSCORE', ctx.key.tickets, a.id) and redis.call('HGET', ctx.key.ticket_records, a.id)
    local rec = raw and cjson.decode(raw)
    if not rec or rec.msisdn ~= ctx.msisdn then
      reply('complaints.unknown', { id = a.id })
      return 'ticket_unknown'
    end
    reply('complaints.status', { id = rec.id, state = rec.state, opened = rec.opened, due = rec.due,
      resolved = rec.resolved_at or 0, answer = rec.answer or '', now = ctx.now })
    return 'ticket_status'
  end
  local ids = redis.call('ZRANGE', ctx.key.tickets, 0, -1)
  if #ids == 0 then
    reply('complaints.none', {})
    return 'ticket_none'
  end
  local open = 0
  for _, id in ipairs(ids) do
    if redis.call('ZSCORE', ctx.key.ticket_due, id) then open = open + 1 end
  end
  local items = {}
  for i = #ids, math.max(1, #ids - a.limit + 1), -1 do
    local raw = redis.call('HGET', ctx.key.ticket_records, ids[i])
    local rec = raw and cjson.decode(raw)
    if rec and rec.msisdn == ctx.msisdn then
      items[#items + 1] = { rec.id, rec.state, rec.opened, rec.due, rec.resolved_at or 0 }
    end
  end
  reply('complaints.list', { items = items, total = #ids, open = open, now = ctx.now })
  return 'ticket_list'
end

-- Customer care answers (smsbot tickets resolve): the ticket is closed and the answer queued for
-- the subscriber (not an MO: the reply goes to the queue, any live instance sends it).
-- args: {id, answer, by}; ctx.extra = the record (JSON) when it was already resolved.
handlers['complaints.resolve'] = function()
  local a = ctx.args
  local raw = redis.call('HGET', ctx.key.ticket_records, a.id)
  local rec = raw and cjson.decode(raw)
  if not rec or rec.msisdn ~= ctx.msisdn then return 'ticket_unknown' end
  if rec.state ~= 'open' then
    ctx.extra = raw
    return 'ticket_already_resolved'
  end
  rec.state = 'resolved'
  rec.resolved_at = ctx.now
  rec.answer = a.answer
  rec.by = a.by
  redis.call('HSET', ctx.key.ticket_records, a.id, cjson.encode(rec))
  redis.call('ZREM', ctx.key.ticket_due, a.id)
  audit('', 'open', 'resolved', 'ticket_resolve', { ticket = a.id, by = a.by })
  reply('complaints.answer', { id = a.id, answer = a.answer })
  return 'ticket_resolved'
end
