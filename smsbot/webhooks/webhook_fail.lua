-- After a failed attempt of webhook job ARG_id (smsbot.webhooks.jobs `Jobs.fail`;
-- smsbot.steps.WEBHOOK_FAIL): due again at ARG_next_ms, or, once ARG_max_attempts are begun, moved to
-- KEY_dead as ARG_letter (the dead letter's JSON). Returns 'retry', 'dead' or 'gone' (delivered
-- meanwhile by a sender that took it after the lease).
if redis.call('HEXISTS', KEY_jobs, ARG_id) == 0 then return 'gone' end
local n = tonumber(redis.call('HGET', KEY_tries, ARG_id) or '0')
if n >= tonumber(ARG_max_attempts) then
  redis.call('HSET', KEY_dead, ARG_id, ARG_letter)
  redis.call('ZREM', KEY_due, ARG_id)
  redis.call('HDEL', KEY_jobs, ARG_id)
  redis.call('HDEL', KEY_tries, ARG_id)
  return 'dead'
end
redis.call('ZADD', KEY_due, ARG_next_ms, ARG_id)
return 'retry'
