-- A webhook job delivered (smsbot.webhooks.jobs `Jobs.done`; smsbot.steps.WEBHOOK_DONE): ARG_id
-- removed from KEY_due, KEY_tries and KEY_jobs. Returns 1, or 0 when it was gone already.
redis.call('ZREM', KEY_due, ARG_id)
redis.call('HDEL', KEY_tries, ARG_id)
return redis.call('HDEL', KEY_jobs, ARG_id)
