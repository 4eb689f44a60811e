-- verify's questions to the billing rules (billing_rules.lua, loaded before this): a batch of
-- cases, each answered with '' (charged) or the reason it is not. Reads no key.
-- ARG: smsbot.steps.BILLING_RULES; ARG_cases: JSON list of {'m', start, due, cancel, period start,
-- run time} (monthly) or {'u', start, due, cancel, use time} (on demand); cancel false when none
local out = {}
for i, c in ipairs(cjson.decode(ARG_cases)) do
  local why
  if c[1] == 'm' then
    why = BILLING.monthly_skip(c[2], c[3], c[4], c[5], c[6])
  else
    why = BILLING.use_skip(c[2], c[3], c[4], c[5])
  end
  out[i] = why or ''
end
return out
