-- A notice posted to the HTTP API (smsbot/api/routes.py, `post_notice`; smsbot.steps.NOTICE): the MT
-- intent on the queue stream and the subscriber's record of it, in one step (a notice id is followed
-- only by its own subscriber, and an id that never existed is told from one that was sent).
-- KEY_queue the queue stream of the subscriber's shard, KEY_notices the subscriber's notices (sorted
-- set: entry id -> ms posted; same slot). ARG_now (ms), ARG_keep_ms how long a notice is followed
-- (dispatch.mt_record_seconds, as the rejected-MT record); after them the queue entry's fields
-- (admin.notice_fields). Returns the entry id.
local fields = {}
for i = NARGS + 1, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEY_queue, '*', unpack(fields))
local now, keep = tonumber(ARG_now), tonumber(ARG_keep_ms)
redis.call('ZADD', KEY_notices, now, id)
redis.call('ZREMRANGEBYSCORE', KEY_notices, '-inf', '(' .. string.format('%.0f', now - keep))
redis.call('PEXPIRE', KEY_notices, keep)
return id
