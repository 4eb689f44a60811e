"""Customer care's side of complaint tickets: list, show, resolve (``smsbot tickets ...``), the overdue count.

Reads go straight to the shard keys (``<prefix>:{N}:ticket_records`` / ``ticket_all`` /
``ticket_due``, one round trip per node for all shards); a resolution is the atomic Lua step
``complaints.resolve`` on the ticket's subscriber, which closes the ticket, audits it and queues
the answer for the subscriber (sent by any live bot instance). A ticket number names its shard
(its last digits, see ``complaints.lua``), so `show` and `resolve` read one hash field to find it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from smsbot.config import Settings
from smsbot.store import Store

from commands.complaints.contract import KEYS_RESOLVE, RESOLVE, id_width


@dataclass(frozen=True)
class Ticket:
    id: str
    msisdn: str
    short_code: str
    lang: str
    text: str
    opened_ms: int
    due_ms: int
    state: str
    resolved_ms: int | None = None
    answer: str | None = None
    by: str | None = None
    cut: bool = False
    ref: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def overdue(self, now_ms: int) -> bool:
        return self.state == "open" and self.due_ms < now_ms


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _ticket(raw: Any) -> Ticket:
    rec = json.loads(_s(raw))
    ref = rec.get("ref") if isinstance(rec.get("ref"), dict) else {}
    return Ticket(str(rec["id"]), str(rec["msisdn"]), str(rec.get("sc", "")), str(rec.get("lang", "zh-CN")),
                  str(rec.get("text", "")), int(rec["opened"]), int(rec["due"]), str(rec["state"]),
                  int(rec["resolved_at"]) if rec.get("resolved_at") else None, rec.get("answer"), rec.get("by"),
                  bool(rec.get("cut")), ref, rec)


def shard_of(settings: Settings, ticket_id: str) -> int | None:
    """The shard a ticket number names, or None when it cannot be a ticket number."""
    w = id_width(settings)
    t = ticket_id.strip()
    if not t.isascii() or not t.isdigit() or len(t) <= w or t.startswith("0"):
        return None
    shard = int(t[-w:])
    return shard if shard < settings.redis.shards else None


def get(settings: Settings, store: Store, ticket_id: str) -> Ticket | None:
    shard = shard_of(settings, ticket_id)
    if shard is None:
        return None
    raw = store.redis.hget(store.keys.shard_named("ticket_records", shard), ticket_id.strip())
    return _ticket(raw) if raw is not None else None


def list_tickets(settings: Settings, store: Store, *, open_only: bool = False, overdue_only: bool = False,
                 limit: int = 100, now_ms: int | None = None) -> list[Ticket]:
    """The latest `limit` tickets (all shards), newest first; open ones only, or overdue ones only."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    keys = store.keys
    shards = range(settings.redis.shards)
    if open_only or overdue_only:
        hi = f"({now}" if overdue_only else "+inf"
        cmds = [("ZRANGEBYSCORE", keys.shard_named("ticket_due", s), "-inf", hi) for s in shards]
    else:
        cmds = [("ZREVRANGE", keys.shard_named("ticket_all", s), 0, limit - 1) for s in shards]
    ids = store.roundtrip(cmds)
    fetch = []
    for s, found in zip(shards, ids):
        if isinstance(found, Exception):
            raise found
        if found:
            fetch.append(("HMGET", keys.shard_named("ticket_records", s), *[_s(i) for i in found]))
    out: list[Ticket] = []
    for res in store.roundtrip(fetch):
        if isinstance(res, Exception):
            raise res
        out += [_ticket(r) for r in res if r is not None]
    out.sort(key=lambda t: (t.opened_ms, int(t.id)), reverse=True)
    return out[:limit]


def overdue_count(store: Store, now_ms: int | None = None) -> int:
    """Open tickets past their promised answer time, all shards (the metrics gauge)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    keys = store.keys
    replies = store.roundtrip([("ZCOUNT", keys.shard_named("ticket_due", s), "-inf", f"({now}") for s in range(keys.shards)])
    total = 0
    for r in replies:
        if isinstance(r, Exception):
            raise r
        total += int(r)
    return total


class TicketError(Exception):
    """The ticket does not exist, or is already resolved (`ticket` then says how)."""

    def __init__(self, message: str, ticket: Ticket | None = None):
        super().__init__(message)
        self.ticket = ticket


def resolve(settings: Settings, store: Store, ticket_id: str, answer: str, by: str) -> Ticket:
    """Close an open ticket with customer care's `answer`, which is queued for the subscriber by
    SMS; returns the resolved ticket. Raises `TicketError` when there is no such ticket or it is
    resolved already (then nothing changes and nothing is sent)."""
    answer = answer.strip()
    if not answer:
        raise ValueError("the answer is empty")
    t = get(settings, store, ticket_id)
    if t is None:
        raise TicketError(f"no ticket {ticket_id}")
    res = store.run_one(store.mo_call(RESOLVE, t.msisdn, t.short_code or settings.short_codes[0].code, lang=t.lang,
                                      correlation=f"care:{by}", args={"id": t.id, "answer": answer, "by": by},
                                      extra_keys=KEYS_RESOLVE))
    if res.outcome == "ticket_unknown":
        raise TicketError(f"no ticket {ticket_id}")
    if res.outcome == "ticket_already_resolved":
        done = _ticket(res.extra) if res.extra else t
        raise TicketError(f"ticket {t.id} was already resolved", done)
    after = get(settings, store, t.id)
    assert after is not None
    return after
