-- An order or use event posted to the HTTP API, once per id (smsbot/api/routes.py, `idempotent_event`).
-- KEYS[1] hash: id -> the first result (Keys.api_ids: same slot as the stream), KEYS[2] the event stream.
-- ARGV[1] the id, ARGV[2] this request's result as JSON {id, msisdn, service, at} (no event id yet),
-- ARGV[3] '1' when the request stated `at` (then it must match too), ARGV[4..] the event's fields.
-- Returns {1, body} for a new event (XADDed, result stored), {0, body} for the same request again
-- (the first result, duplicate = true), {2, first} for the same id with another msisdn, service or
-- at (nothing written). body is EventOut's JSON: the API sends it as it is.
local first = redis.call('HGET', KEYS[1], ARGV[1])
if first then
  local was = cjson.decode(first)
  local now = cjson.decode(ARGV[2])
  if was.msisdn ~= now.msisdn or was.service ~= now.service or (ARGV[3] == '1' and was.at ~= now.at) then
    return {2, first}
  end
  was.duplicate = true
  return {0, cjson.encode(was)}
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
local result = cjson.decode(ARGV[2])
result.event_id = id
result.duplicate = false
local encoded = cjson.encode(result)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return {1, encoded}
