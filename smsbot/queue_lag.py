"""Queue lag: how many replies wait to be sent (all instances) and how long the oldest has waited.

`read(store)` asks Redis in ONE round trip: the length of every outbox and queue stream, and the
first entry of each. Sent entries are deleted from their stream (XDEL/XACK, `smsbot.outbox`), so
the first entry left in a stream is its oldest unsent one; its id is the time Redis wrote it (the
Redis server's clock; an adopted entry is written again, so its age restarts at adoption). The
metrics gauges, the bot's ``/status`` charts and the API's status all read it here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QueueLag:
    depth: int  # entries in the outbox and queue streams: written, not yet sent
    oldest_age_s: float | None  # age of the oldest of them; None when none waits


def read(store: Any, now: float | None = None) -> QueueLag:
    """Depth and oldest age of the outbox and queue streams; raises what Redis raised."""
    keys = store.keys
    streams = keys.all_outboxes() + keys.all_queues()
    replies = store.roundtrip([("XLEN", s) for s in streams] + [("XRANGE", s, "-", "+", "COUNT", 1) for s in streams])
    for r in replies:
        if isinstance(r, Exception):
            raise r
    depth = sum(replies[: len(streams)])
    oldest_ms = min((_entry_ms(first) for first in replies[len(streams):] if first), default=None)
    if oldest_ms is None:
        return QueueLag(depth, None)
    now = time.time() if now is None else now
    return QueueLag(depth, round(max(0.0, now - oldest_ms / 1000), 3))


def _entry_ms(first: Any) -> int:
    entry_id = first[0][0]
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(entry_id.split("-", 1)[0])
