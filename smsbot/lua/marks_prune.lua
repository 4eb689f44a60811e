-- Forget the watermarks of sessions that wrote none since `before` (smsbot.records.mark_value: the
-- time after the batch number): a process that died never deletes its own, and once a guard's
-- whole life has passed since the last one was written, no guard of that session is left to be
-- confirmed by it. A watermark of the form before (no time) is given `now`, and goes in its turn.
-- KEY, ARG: smsbot.steps.MARKS_PRUNE. Returns how many were forgotten.
local flat = redis.call('HGETALL', KEY_marks)
local before, gone, stamped = tonumber(ARG_before), {}, {}
for i = 1, #flat, 2 do
  local at = tonumber(string.match(flat[i + 1], MARK_SEP .. '(%d+)$'))
  if not at then
    stamped[#stamped + 1] = flat[i]
    stamped[#stamped + 1] = flat[i + 1] .. MARK_SEP .. ARG_now
  elseif at < before then
    gone[#gone + 1] = flat[i]
  end
end
if #stamped > 0 then redis.call('HSET', KEY_marks, unpack(stamped)) end
if #gone > 0 then redis.call('HDEL', KEY_marks, unpack(gone)) end
return #gone
