"""The webhook events: their types (what an endpoint subscribes to by name), their JSON bodies, and
how each is made from the record that already holds it.

* An audit entry of a shard (``<prefix>:{N}:audit``, written by the Lua steps): a cancellation
  (`CANCELLED`), an order whose charge reminder was queued in the same step (`REMINDED`), a charge
  (`CHARGED`), a complaint ticket opened or resolved (`TICKET_OPENED`, `TICKET_RESOLVED`).
* An entry of the webhook inbound stream (``<prefix>:{webhooks}:in``), written in the SMS path's
  own Redis round trip: a delivery receipt (`receipt_command`, by `smsbot.pipeline`) and a notice the
  SMSC refused for good (`rejected_notice_write`, by `smsbot.app` when the outbox records it).

An event's id is made from its source entry (``a7-1764567890123-0``: shard 7's audit entry;
``w-…``: the inbound stream's), so reading the same entry twice gives the same id: the id is the
idempotency key receivers deduplicate on. The body is built once, when the event is collected,
and every attempt sends the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from smsbot.config import WebhookEvent
from smsbot.keys import Keys

RECEIPT = WebhookEvent.RECEIPT.value
CANCELLED = WebhookEvent.CANCELLED.value
REMINDED = WebhookEvent.REMINDED.value
CHARGED = WebhookEvent.CHARGED.value
TICKET_OPENED = WebhookEvent.TICKET_OPENED.value
TICKET_RESOLVED = WebhookEvent.TICKET_RESOLVED.value
NOTICE_REJECTED = WebhookEvent.NOTICE_REJECTED.value

API_ACTOR = "api:"  # correlation / actor of what an HTTP API request did: ``api:<token name>`` (smsbot.admin.api_actor)
INBOUND_TAG = "w"

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    at: int  # ms since the epoch: when it happened
    data: dict[str, Any]

    def body(self) -> str:
        """The JSON document POSTed (UTF-8): ``{"id", "type", "at", "data"}``."""
        return _DUMPS({"id": self.id, "type": self.type, "at": self.at, "data": self.data})


def audit_tag(shard: int) -> str:
    """The id prefix of events made from shard `shard`'s audit stream."""
    return f"a{shard}"


def _int(v: Any, default: int | None = None) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _entry_ms(entry_id: str) -> int:
    return _int(entry_id.split("-", 1)[0], 0) or 0


def from_audit(tag: str, entry_id: str, f: dict[str, str],
               ticket: Callable[[str], dict[str, Any] | None] = lambda _id: None) -> Event | None:
    """The event an audit entry stands for, or None (a subscription added, a first charge, ...).
    `ticket(id)` gives a ticket's record (text, short code, answer) for the ticket events."""
    reason, new = f.get("reason", ""), f.get("new", "")
    eid = f"{tag}-{entry_id}"
    at = _int(f.get("at")) or _entry_ms(entry_id)
    msisdn, service, mo = f.get("msisdn", ""), f.get("service", ""), f.get("mo", "")
    if reason in ("ticket_open", "ticket_resolve"):
        tid = f.get("ticket", "")
        rec = ticket(tid) or {}
        if reason == "ticket_open":
            return Event(eid, TICKET_OPENED, at, {
                "ticket": tid, "msisdn": msisdn, "short_code": rec.get("short_code"), "text": rec.get("text"),
                "due": _int(f.get("due")), "correlation": mo})
        return Event(eid, TICKET_RESOLVED, at, {
            "ticket": tid, "msisdn": msisdn, "answer": rec.get("answer"), "by": f.get("by") or rec.get("by")})
    if reason == "charge":
        return Event(eid, CHARGED, at, {
            "msisdn": msisdn, "service": service, "fen": _int(f.get("fen")), "ledger": f.get("ledger"),
            "period": f.get("period") or None, "use_id": f.get("use") or None, "run": mo})
    if new == "cancelled" and f.get("old") != "cancelled":  # a live subscription (or a pending order) ended
        via = "sms" if reason in ("reply", "menu") else "api" if mo.startswith(API_ACTOR) else "care"
        return Event(eid, CANCELLED, at, {
            "msisdn": msisdn, "service": service, "previous_state": f.get("old"), "via": via,
            "how": f.get("cancel") or None, "order_id": f.get("order_id") or None, "correlation": mo})
    if reason == "order" and new == "pending":
        return Event(eid, REMINDED, at, {
            "msisdn": msisdn, "service": service, "order_id": f.get("order_id"), "kind": f.get("kind"),
            "first_charge_due": _int(f.get("due")), "correlation": mo})
    return None


def from_inbound(entry_id: str, f: dict[str, str],
                 mt_records: Callable[[str], list[dict[str, Any]]] = lambda _id: []) -> Event | None:
    """The event of an inbound-stream entry (None: a type this version does not know).
    `mt_records(message_id)` gives the MT records under an SMSC message id (`Store.mt_records`' list)."""
    eid = f"{INBOUND_TAG}-{entry_id}"
    kind = f.get("type")
    at = _int(f.get("at")) or _entry_ms(entry_id)
    if kind == RECEIPT:
        mid = f.get("message_id", "")
        # the record this receipt updated: receipt.lua stamped it with this receipt's time and bind
        rec = next((r for r in reversed(mt_records(mid)) if str(r.get("receipt_at")) == f.get("at")
                    and r.get("bind", f.get("bind")) == f.get("bind")), None)
        data: dict[str, Any] = {"message_id": mid, "state": f.get("state"), "err": f.get("err") or None,
                                "matched": rec is not None}
        if rec is not None:
            data.update({"msisdn": rec.get("to"), "short_code": rec.get("from"), "template": rec.get("tpl"),
                         "correlation": rec.get("correlation"), "part": _int(rec.get("part")),
                         "parts": _int(rec.get("parts")), "submitted_at": _int(rec.get("at"))})
        return Event(eid, RECEIPT, at, data)
    if kind == NOTICE_REJECTED:
        return Event(eid, NOTICE_REJECTED, at, {
            "notice_id": f.get("notice_id"), "msisdn": f.get("msisdn"), "short_code": f.get("short_code"),
            "template": f.get("template"), "status": f.get("status"), "correlation": f.get("correlation")})
    return None


# -- what the SMS path writes (one command each, in a round trip it makes anyway) --------------------
def receipt_command(keys: Keys, message_id: str, state: str, err: str, bind: str, at_ms: int) -> tuple[Any, ...]:
    """XADD of a delivery receipt to the inbound stream; `at_ms` is the time receipt.lua stamps on
    the MT record it updates (``receipt_at``), by which the collector finds that record."""
    return ("XADD", keys.webhook_inbound(), "*", "type", RECEIPT, "message_id", message_id, "state", state,
            "err", err, "bind", bind, "at", at_ms)


def is_notice(correlation: str) -> bool:
    """An MT queued by ``POST /v1/notices`` (its correlation is the token's ``api:<name>``)."""
    return correlation.startswith(API_ACTOR)


def rejected_notice_fields(notice_id: str, msisdn: str, short_code: str, template: str, status: int,
                           correlation: str, at_ms: int) -> dict[str, str]:
    """The inbound-stream entry of a notice the SMSC refused for good (`notice_id`: its queue entry id,
    the id ``POST /v1/notices`` answered)."""
    return {"type": NOTICE_REJECTED, "notice_id": notice_id, "msisdn": msisdn, "short_code": short_code,
            "template": template, "status": hex(status), "correlation": correlation, "at": str(at_ms)}
