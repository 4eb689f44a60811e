-- Dead letters back to fresh webhook jobs, due at ARG_now (ms), attempts from 1 again
-- (smsbot.webhooks.jobs `Jobs.replay`; smsbot.steps.WEBHOOK_REPLAY). ARG_every '1': every dead letter
-- in KEY_dead; else the event ids after the declared ARGV. Returns the ids replayed.
local ids
if ARG_every == '1' then ids = redis.call('HKEYS', KEY_dead) else ids = { unpack(ARGV, NARGS + 1) } end
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEY_dead, id)
  if raw then
    redis.call('HSET', KEY_jobs, id, cjson.decode(raw).body)
    redis.call('HDEL', KEY_tries, id)
    redis.call('ZADD', KEY_due, ARG_now, id)
    redis.call('HDEL', KEY_dead, id)
    out[#out + 1] = id
  end
end
return out
