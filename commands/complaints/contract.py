"""What the complaints package's Python and its Lua step (complaints.lua) share: the handlers'
names, the extra keys each declares, and how wide a ticket number's shard suffix is."""

from __future__ import annotations

from smsbot.config import Settings

KEYS_OPEN = ("tickets", "@ticket_records", "@ticket_all", "@ticket_due", "@ticket_seq", "ledger")
KEYS_QUERY = ("tickets", "@ticket_records", "@ticket_due")
KEYS_RESOLVE = ("tickets", "@ticket_records", "@ticket_due")
OPEN, QUERY, RESOLVE = "complaints.open", "complaints.query", "complaints.resolve"


def id_width(settings: Settings) -> int:
    """Digits of the shard at the end of a ticket number."""
    return len(str(max(settings.redis.shards - 1, 0)))
