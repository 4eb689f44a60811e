-- A notice posted to the HTTP API (smsbot/api/routes.py, `post_notice`): the MT intent on the queue
-- stream and the subscriber's record of it, in one step (a notice id is followed only by its own
-- subscriber, and an id that never existed is told from one that was sent).
-- KEYS[1] the queue stream of the subscriber's shard, KEYS[2] the subscriber's notices (sorted set:
-- entry id -> ms posted; Keys.notices, same slot).
-- ARGV[1] now (ms), ARGV[2] how long a notice is followed (ms: dispatch.mt_record_seconds, as the
-- rejected-MT record), ARGV[3..] the queue entry's fields (admin.notice_fields).
-- Returns the entry id.
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local now, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now, id)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now - keep))
redis.call('PEXPIRE', KEYS[2], keep)
return id
