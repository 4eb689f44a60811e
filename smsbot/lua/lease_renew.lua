-- Renew a lease held by this token, or take it back if it expired and nobody took it: 1, else 0.
-- KEY, ARG: smsbot.steps.LEASE_RENEW (a billing run's lease)
local v = redis.call('GET', KEY.lease)
if v == ARG.token or not v then
  redis.call('SET', KEY.lease, ARG.token, 'PX', ARG.ttl_ms)
  return 1
end
return 0
