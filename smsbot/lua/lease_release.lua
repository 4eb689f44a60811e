-- Give a lease up, only if this token still holds it: 1, else 0.
-- KEY, ARG: smsbot.steps.LEASE_RELEASE (a billing run's lease)
if redis.call('GET', KEY_lease) == ARG_token then return redis.call('DEL', KEY_lease) end
return 0
