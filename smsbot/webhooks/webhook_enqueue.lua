-- Webhook jobs for new events (smsbot.webhooks.jobs `Jobs.enqueue`; smsbot.steps.WEBHOOK_ENQUEUE), due
-- at ARG_now (ms). After the declared ARGV: event id, body, in turn. An id already waiting in KEY_jobs
-- is not added again (an event collected twice is one job). Returns how many were new.
local n = 0
for i = NARGS + 1, #ARGV, 2 do
  if redis.call('HSETNX', KEY_jobs, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEY_due, ARG_now, ARGV[i])
    n = n + 1
  end
end
return n
