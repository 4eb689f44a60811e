"""What stored records mean, declared once for Python and Lua: the states of a subscription record
(the subscriber's subscriptions hash, one JSON record per service code). Lua gets them from the
header `smsbot.steps` generates (``LIVE``)."""

from __future__ import annotations

LIVE_STATES = frozenset({"active", "pending"})  # a subscription that is on: listed by 0000, billed when due
