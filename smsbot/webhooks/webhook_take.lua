-- One due webhook job, held until ARG_lease_end (ms) and its attempt counted (smsbot.webhooks.jobs
-- `Jobs.take`; smsbot.steps.WEBHOOK_TAKE): its due score becomes the lease's end, so the job of a
-- sender that died is due again once the lease is over.
-- Returns {id, body, attempt, false}, or {false, false, 0, the next due score or false} when none is
-- due at ARG_now (ms).
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEY_due, '-inf', ARG_now, 'LIMIT', 0, 1)
  if #ids == 0 then
    local nxt = redis.call('ZRANGE', KEY_due, 0, 0, 'WITHSCORES')
    return {false, false, 0, nxt[2] or false}
  end
  local id = ids[1]
  local body = redis.call('HGET', KEY_jobs, id)
  if body then
    redis.call('ZADD', KEY_due, ARG_lease_end, id)
    return {id, body, redis.call('HINCRBY', KEY_tries, id, 1), false}
  end
  redis.call('ZREM', KEY_due, id)  -- a due entry without its job (never written by these steps): drop it
end
