-- An order or use event posted to the HTTP API, once per id (commands/orders/api.py, `idempotent_event`;
-- the step commands.orders.steps.EVENT names its KEYS, ARGV and result).
-- KEY_ids: hash id -> the first result (Keys.api_ids: same slot as the stream), KEY_stream: the event stream.
-- ARG_id, ARG_result: this request's result as JSON {id, msisdn, service, at} (no event id yet),
-- ARG_at_given: '1' when the request stated `at` (then it must match too); after them the event's fields.
-- Returns {NEW, body} for a new event (XADDed, result stored), {SAME, body} for the same request again
-- (the first result, duplicate = true), {CONFLICT, first} for the same id with another msisdn, service
-- or at (nothing written). body is EventOut's JSON: the API sends it as it is.
local SAME, NEW, CONFLICT = 0, 1, 2
local first = redis.call('HGET', KEY_ids, ARG_id)
if first then
  local was = cjson.decode(first)
  local now = cjson.decode(ARG_result)
  if was.msisdn ~= now.msisdn or was.service ~= now.service or (ARG_at_given == '1' and was.at ~= now.at) then
    return {CONFLICT, first}
  end
  was.duplicate = true
  return {SAME, cjson.encode(was)}
end
local fields = {}
for i = NARGS + 1, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEY_stream, '*', unpack(fields))
local result = cjson.decode(ARG_result)
result.event_id = id
result.duplicate = false
local encoded = cjson.encode(result)
redis.call('HSET', KEY_ids, ARG_id, encoded)
return {NEW, encoded}
