-- Adopt the replies of dead senders in one outbox stream: move them to the queue stream, where any
-- live sender reads them through the consumer group. An entry moves only while its owner holds no
-- lease in this shard, checked here in the same atomic step, so a live owner never loses an entry it
-- may still send, and an entry is moved at most once. The scan goes on from where the last one
-- stopped, so a large backlog of a live sender's entries cannot hide a dead one's behind it.
-- The owners' lease keys are declared (the extra KEYS): in a cluster, a script may only look at keys
-- it declared while its slot migrates (an undeclared key that is not on this node is "a non local
-- key", and on the importing node its absence proves nothing), and Redis serves a script whose keys
-- are not all on one node with ASK/TRYAGAIN. An owner whose lease was not declared counts as alive:
-- its entries stay, and the owner is named in the reply so that the caller declares it next time.
-- KEY, ARG and the reply: smsbot.steps.ADOPT
local declared = {}
for i = NKEYS + 1, #KEYS do declared[KEYS[i]] = true end
local start = ARG_start == '-' and '-' or ('(' .. ARG_start)
local count = tonumber(ARG_count)
local entries = redis.call('XRANGE', KEY_outbox, start, ARG_horizon, 'COUNT', count)
local alive, owners = {}, {}
local moved = 0
for _, e in ipairs(entries) do
  local id, f = e[1], e[2]
  local owner, out = '', {}
  for i = 1, #f, 2 do
    if f[i] == 'own' then
      owner = f[i + 1]
    else
      out[#out + 1] = f[i]
      out[#out + 1] = f[i + 1]
    end
  end
  local live = alive[owner]
  if live == nil then
    local lease = ARG_lease_prefix .. owner
    if owner == '' then
      live = false
    else
      owners[#owners + 1] = owner
      live = not declared[lease] or redis.call('EXISTS', lease) == 1
    end
    alive[owner] = live
  end
  if not live then
    out[#out + 1] = 'adopted'
    out[#out + 1] = id
    redis.call('XADD', KEY_queue, '*', unpack(out))
    redis.call('XDEL', KEY_outbox, id)
    moved = moved + 1
  end
end
if #entries < count then return { moved, '-', owners } end
return { moved, entries[#entries][1], owners }
