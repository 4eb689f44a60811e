-- Renew a lease held by this token, or take it back if it expired and nobody took it: 1, else 0.
-- KEY, ARG: smsbot.steps.LEASE_RENEW (a billing run's lease)
local v = redis.call('GET', KEY_lease)
if v == ARG_token or not v then
  redis.call('SET', KEY_lease, ARG_token, 'PX', ARG_ttl_ms)
  return 1
end
return 0
