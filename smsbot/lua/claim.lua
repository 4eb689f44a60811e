-- Take over the queue entries that dead senders read but never acknowledged. The check of the
-- holder's lease and the claim are one atomic step, so the entries of a dead sender are claimed
-- once, by one live sender, and a live holder (lease present) never loses one. A dead sender's
-- consumer is deleted from the group once it holds nothing.
-- The holders' lease keys are declared (the extra KEYS), as in adopt.lua (a slot migrating): a
-- holder whose lease was not declared counts as alive, and is named in the reply for next time.
-- KEY, ARG: smsbot.steps.CLAIM
-- Returns { the claimed entries { {id, {field, value, ...}}, ... }, the other consumers' names }
local declared = {}
for i = NKEYS + 1, #KEYS do declared[KEYS[i]] = true end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEY_queue, ARG_group)
if not ok then return { {}, {} } end
local count = tonumber(ARG_count)
local out, names = {}, {}
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local name, pending = info['name'], tonumber(info['pending'])
  local lease = ARG_lease_prefix .. name
  if name ~= ARG_consumer then names[#names + 1] = name end
  if name ~= ARG_consumer and declared[lease] and redis.call('EXISTS', lease) == 0 then
    if pending > 0 and #out < count then
      local ids = {}
      for _, p in ipairs(redis.call('XPENDING', KEY_queue, ARG_group, '-', '+', count - #out, name)) do
        ids[#ids + 1] = p[1]
      end
      if #ids > 0 then
        for _, e in ipairs(redis.call('XCLAIM', KEY_queue, ARG_group, ARG_consumer, 0, unpack(ids))) do
          if e and e[2] then out[#out + 1] = e end
        end
      end
      pending = pending - #ids
    end
    if pending <= 0 then redis.call('XGROUP', 'DELCONSUMER', KEY_queue, ARG_group, name) end
  end
end
return { out, names }
