-- smsbot MO script prelude. Assembled by smsbot/store.py as:
--   the generated header (smsbot.steps.MO) .. prelude.lua .. one fragment (core lua/reply.lua, lua/reassembly.lua, the billing steps, or a
--   command package's commands/<name>/<name>.lua with its libraries) .. main.lua
-- KEY and ARG (generated from smsbot.steps.MO, where each is described) name the KEYS and ARGV.
-- Unused keys hold a placeholder key with the same hash tag (cluster: one slot). Extra keys a
-- handler declared (Intent.keys; 'name' per subscriber, '@name' per shard, both with the
-- subscriber's hash tag) follow the declared ones, named by ARG_extra_keys: ctx.key[name].
local handlers = {}
local conversations = {}

local ctx = {
  subs_key = KEY_subs, outbox = KEY_outbox, audit_key = KEY_audit,
  queue = KEY_queue, parts_key = KEY_parts, live_key = KEY_live, sent = {},
  handler = ARG_handler, now = tonumber(ARG_now), msisdn = ARG_msisdn, short_code = ARG_short_code, lang = ARG_lang,
  mo = ARG_mo, guard_ttl = tonumber(ARG_guard_ms), args = cjson.decode(ARG_args),
  consumer = ARG_consumer, token = ARG_token,
  replies = 0, answered = {},  -- own, id, template, data per reply (this MO's guard, main.lua)
  key = {},
}
if ARG_extra_keys ~= '' then
  for i, name in ipairs(cjson.decode(ARG_extra_keys)) do ctx.key[(string.gsub(name, '^@', ''))] = KEYS[NKEYS + i] end
end

-- What every MO step reads, in ONE command (each command in a script costs its own call): the
-- subscriber's MO state at this short code (the conversation and the guards of recent MOs, in the form
-- smsbot.records declares; main.lua writes it back in one SET), this sender's lease (whether the
-- replies are its own, below), the live-subscriptions index (the 0000 menu) and the MO's guard as
-- the version before kept it (a key of its own; main.lua). All share the subscriber's hash tag (one
-- slot); an unused one is the placeholder key, which never exists.
local pre = redis.call('MGET', KEY_state, KEY_lease, KEY_live, KEY_old_guard)
ctx.owned = ctx.consumer ~= '' and pre[2] ~= false  -- the lease exists, read in the same atomic step
local live_cached = pre[3]  -- the index as stored, kept current by write_live_index
ctx.old_guard = pre[4]  -- false: none

-- The MO state as read: the open conversation (its JSON, taken out of the stored text only when
-- asked for: the 0000 menu replaces it unread) and until when it is kept, and where the guards'
-- records start (main.lua reads them in place; 0: none).
local state_raw = pre[1]
local conv_raw, conv_until, guards_at = false, 0, 0
local conv_from, conv_to = 0, -1  -- the stored conversation's place in state_raw, while conv_raw is false
if state_raw then
  if string.byte(state_raw, 1) == 2 then  -- STATE_MARK
    local f = string.find(state_raw, STATE_FIELD, 2, true)
    local rec = string.find(state_raw, STATE_REC, f, true)
    local u = tonumber(string.sub(state_raw, 2, f - 1))
    local to = rec and rec - 1 or #state_raw
    if to > f and u > ctx.now then conv_from, conv_to, conv_until = f + 1, to, u end
    if rec then guards_at = rec + 1 end
  else  -- the form before: the conversation's JSON alone, kept for the key's time to live
    conv_raw, conv_until = state_raw, ctx.now + math.max(redis.call('PTTL', KEY_state), 1)
  end
end

-- The stored conversation's JSON (false: none), taken out of the stored text once.
local function conv_text()
  if not conv_raw and conv_to >= conv_from then
    conv_raw, conv_from, conv_to = string.sub(state_raw, conv_from, conv_to), 0, -1
  end
  return conv_raw
end

-- Store a reply intent (template `tpl`, `data`, rendered by the sender in `lang`). In an MO's script
-- the sender handling the MO sends it itself: the entry goes to the outbox stream marked with its
-- owner and is returned to it (no consumer-group read on the hot path) -- but only while that
-- sender holds its lease (ctx.owned; smsbot.delivery: without it, siblings may be adopting its
-- replies). Outside an MO (orders, usage events), or without a lease, it goes to the queue stream,
-- which every sender reads through the consumer group.
local function reply_encoded(tpl, encoded)
  local to = ARG_reply_to ~= '' and ARG_reply_to or ctx.msisdn
  local id, own
  if ctx.owned then
    own = '1'
    id = redis.call('XADD', ctx.outbox, '*', 'to', to, 'from', ctx.short_code, 'lang', ctx.lang,
      'tpl', tpl, 'data', encoded, 'mo', ctx.mo, 't', ARG_now, 'own', ctx.consumer)
    ctx.sent[#ctx.sent + 1] = { id, tpl, encoded }  -- the caller knows to/from/lang/mo already
  else
    own = '0'
    id = redis.call('XADD', ctx.queue, '*', 'to', to, 'from', ctx.short_code, 'lang', ctx.lang,
      'tpl', tpl, 'data', encoded, 'mo', ctx.mo, 't', ARG_now)
  end
  ctx.replies = ctx.replies + 1
  -- main.lua keeps what was answered in the MO's redelivery guard: a redelivery gets the same answer
  local a = ctx.answered
  a[#a + 1] = own; a[#a + 1] = id; a[#a + 1] = tpl; a[#a + 1] = encoded
end

local function reply(tpl, data)
  reply_encoded(tpl, cjson.encode(data or {}))
end

local function sub_get(code)
  local raw = redis.call('HGET', ctx.subs_key, code)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function sub_put(code, rec)
  redis.call('HSET', ctx.subs_key, code, cjson.encode(rec))
  -- main.lua brings the live index up to date once the handler is done (update_live_index): a
  -- subscription that is off now leaves its place; one that is on needs the order rebuilt
  if LIVE[rec.state] then
    ctx.live_rebuild = true
  else
    ctx.live_off = ctx.live_off or {}
    ctx.live_off[code] = true
  end
  ctx.live_dirty = true
end

-- Every subscription change goes here: one audit entry, old and new state, and the MO behind it;
-- `extra` (optional) adds fields (order id, due time, ledger field, ticket, ...).
local function audit(code, old_state, new_state, reason, extra)
  if not extra then
    redis.call('XADD', ctx.audit_key, '*', 'msisdn', ctx.msisdn, 'service', code, 'old', old_state or 'none',
      'new', new_state, 'at', tostring(ctx.now), 'mo', ctx.mo, 'reason', reason or '')
    return
  end
  local cmd = { 'XADD', ctx.audit_key, '*', 'msisdn', ctx.msisdn, 'service', code, 'old', old_state or 'none',
    'new', new_state, 'at', tostring(ctx.now), 'mo', ctx.mo, 'reason', reason or '' }
  for k, v in pairs(extra) do
    cmd[#cmd + 1] = k
    cmd[#cmd + 1] = tostring(v)
  end
  redis.call(unpack(cmd))
end

-- LIVE (the states of a subscription that is on) comes from the header: smsbot.records.LIVE_STATES

-- All live subscriptions in a stable order: subscription time, then service code.
local function live_subscriptions()
  local flat = redis.call('HGETALL', ctx.subs_key)
  local list = {}
  for i = 1, #flat, 2 do
    local rec = cjson.decode(flat[i + 1])
    if LIVE[rec.state] then
      rec.code = flat[i]
      list[#list + 1] = rec
    end
  end
  table.sort(list, function(a, b)
    if a.since ~= b.since then return a.since < b.since end
    if (a.order or 0) ~= (b.order or 0) then return (a.order or 0) < (b.order or 0) end
    return a.code < b.code
  end)
  return list
end

-- Position of a new subscription in the menu: after every existing one, even within one millisecond.
local function next_order()
  local flat = redis.call('HVALS', ctx.subs_key)
  local max = 0
  for _, raw in ipairs(flat) do
    local o = cjson.decode(raw).order or 0
    if o > max then max = o end
  end
  return max + 1
end

-- The live subscriptions' codes in menu order as JSON text, and how many, kept in KEY_live as
-- "<n>|<JSON list>" so that the 0000 menu, the hot path, reads one string and decodes no record.
-- Every script that changes a record (sub_put) brings it up to date once at its end (main.lua,
-- update_live_index); a missing or unreadable index (data from before it existed, a hand edit) is
-- rebuilt from the records.
local function write_live_index()
  local codes = {}
  for i, rec in ipairs(live_subscriptions()) do codes[i] = rec.code end
  local items = #codes > 0 and cjson.encode(codes) or '[]'
  live_cached = #codes .. '|' .. items
  redis.call('SET', ctx.live_key, live_cached)
  return #codes, items
end

local function live_index()
  local idx = live_cached
  if idx then
    local n, items = string.match(idx, '^(%d+)|(.*)$')
    if n then return tonumber(n), items end
  end
  return write_live_index()
end

-- After the handler changed records (sub_put): when every change turned a subscription off, the
-- stored index loses those codes (the order of the others stands; no record is read), rewritten
-- only if one was in it; else, or when the index is missing or unreadable, it is rebuilt.
local function update_live_index()
  local items = not ctx.live_rebuild and live_cached and string.match(live_cached, '^%d+|(.*)$')
  if not items then
    write_live_index()
    return
  end
  local codes, left = cjson.decode(items), {}
  for _, code in ipairs(codes) do
    if not ctx.live_off[code] then left[#left + 1] = code end
  end
  if #left < #codes then
    live_cached = #left .. '|' .. (#left > 0 and cjson.encode(left) or '[]')
    redis.call('SET', ctx.live_key, live_cached)
  end
end

-- The open conversation of this short code (read by the prelude's MGET; nil: none).
local function conv_get()
  local text = conv_text()
  if not text then return nil end
  return cjson.decode(text)
end

-- Open or replace the conversation; it accepts replies until `exp`, and is kept `keep_ms` longer.
-- Stored with the MO's guard by main.lua's one SET of the MO state.
local function conv_put_encoded(encoded, exp, keep_ms)
  local kept = exp + (keep_ms or 0)
  if kept <= ctx.now then kept = ctx.now + 1 end
  conv_raw, conv_until, conv_from, conv_to, ctx.conv_changed = encoded, kept, 0, -1, true
end

-- Close the conversation (main.lua stores the MO state without it).
local function conv_del()
  conv_raw, conv_from, conv_to, ctx.conv_changed = false, 0, -1, true
end

local function conv_put(conv, keep_ms)
  conv_put_encoded(cjson.encode(conv), conv.exp, keep_ms)
end
