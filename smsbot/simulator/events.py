"""What the simulated SMSC sees, kept for the testers' web page: conversations and a live event feed.

`SimEvents` is fed by `SimSmsc` or `SimIsmg` (each publisher is a few dict operations under one leaf lock that
never calls out, so it is safe from any simulator thread and cheap enough for benchmark traffic)
and read by the control API (``GET /events``, server-sent events; ``GET /web/...``):

- **conversation items**, the latest `keep_items` of them (oldest forgotten first): one per MO a
  handset injected (text, options, delivery state towards the ESME) and one per whole MT stored
  (parts joined, text decoded, whether its submit_sm asked for delivery receipts, the receipt of
  each part joined by message_id — its stat/err and whether the ESME took it —, and whether a
  handset picked it up from the inbox).
  Every change to an item gives it the next sequence number (``seq``): a reader keeps the item
  with the highest ``seq``, so a snapshot and the live feed can be merged in any order;
- **events**, the latest `keep_events` of them, each with its sequence number and its time ``t``:
  ``item`` (an item as it is now), ``bind`` (opened/closed, and the binds open after it),
  ``submit`` (a submit_sm answered with an error or left unanswered by a fault), ``faults``,
  ``profile``, ``note`` (actions such as a drop). A reader that fell behind further than the ring
  keeps learns it (`wait` returns ``None``) and takes a fresh snapshot; a new reader gets the
  `recent` ones for its log.

Observing never touches the mailbox: an MT stays waiting for its handset whether or not a web
page showed it. ``inbox`` on an MT item says ``"waiting"`` until a handset picks it up
(``GET /inbox/<msisdn>``, `Mailbox.take`), then ``"picked up"``.

Receipts are queued per part, the earlier parts' ones before the message is whole: they wait in
a small table until their MT is stored. With reused message ids (profile flag
``message_id_cycle``) a receipt is joined to the latest MT holding that id that has no receipt for
it yet.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

KEEP_ITEMS = 5000  # conversation items (MOs and MTs) kept, all MSISDNs together
KEEP_EVENTS = 2000  # events kept for readers catching up (SSE Last-Event-ID)
KEEP_RECEIPTS = 20000  # receipt jobs remembered (job id -> its record)
CONVERSATION_MAX = 300  # items returned by `conversation`
RECENT_EVENTS = 300  # events a page gets for its log when it connects (`recent`)


def _trim(d: OrderedDict[Any, Any], limit: int) -> None:
    while len(d) > limit:
        d.popitem(last=False)


class SimEvents:
    """Conversation items and a ring of recent events, with a blocking `wait` for live readers."""

    def __init__(self, keep_items: int = KEEP_ITEMS, keep_events: int = KEEP_EVENTS):
        self.instance = uuid.uuid4().hex[:12]  # tells readers the simulator (and its numbering) changed
        self._cond = threading.Condition()
        self._seq = 0
        self._ring: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=keep_events)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keep_items = keep_items
        self._mt_ids = itertools.count(1)
        self._mt_by_mid: dict[str, str] = {}  # part message_id -> MT item id (the latest)
        self._mt_by_key: dict[tuple[str, str, float], str] = {}  # StoredMessage (to, id, received_at) -> item id
        self._receipts: OrderedDict[str, dict[str, Any]] = OrderedDict()  # receipt job id -> record
        self._early: OrderedDict[str, dict[str, Any]] = OrderedDict()  # message_id -> record, MT not whole yet
        self._closed = False

    # ------------------------------------------------------------------ publishing (simulator side)
    def _publish(self, kind: str, payload: dict[str, Any]) -> int:
        """Under the lock: the next sequence number, the event appended, readers woken."""
        self._seq += 1
        self._ring.append((self._seq, kind, payload))
        self._cond.notify_all()
        return self._seq

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """An event of `kind`; its payload gets ``t`` (epoch seconds, now) unless it has one."""
        with self._cond:
            self._publish(kind, {"t": time.time(), **payload})

    def _changed(self, item: dict[str, Any]) -> None:
        """Under the lock: `item` changed; new seq, an ``item`` event with a copy."""
        item["seq"] = self._seq + 1
        self._publish("item", self._public(item))

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        rec = item.get("receipts")
        if rec is not None:
            out["receipts"] = [
                {"message_id": mid, **{k: v for k, v in rec[mid].items() if k != "job"}}
                for mid in item["message_ids"] if mid in rec
            ]
        return out

    def _add(self, item: dict[str, Any]) -> None:
        self._items[item["id"]] = item
        while len(self._items) > self._keep_items:
            _, old = self._items.popitem(last=False)
            if old["kind"] == "mt":
                for mid in old["message_ids"]:
                    if self._mt_by_mid.get(mid) == old["id"]:
                        del self._mt_by_mid[mid]
                self._mt_by_key.pop(old["_key"], None)
        self._changed(item)

    def mo_queued(self, job: Any, text: str, options: dict[str, Any]) -> None:
        """An MO was injected (`Deliveries.inject_mo`): `job` is its `MoJob`, `options` what was asked."""
        item = {
            "kind": "mo", "id": job.id, "msisdn": job.msisdn, "peer": job.short_code, "text": text,
            "parts": len(job.parts), "carrier": job.carrier, "options": options, "t": job.created_at,
            "state": job.state, "waiting_bind": False, "redeliveries": 0, "last_status": None, "error": "",
        }
        with self._cond:
            self._add(item)

    def job_changed(self, job: Any) -> None:
        """After each delivery attempt of an MO or a receipt (the scheduler's `after_attempt`; a
        CMPP status report is a receipt here)."""
        with self._cond:
            if job.kind in ("receipt", "report"):
                rec = self._receipts.get(job.id)
                if rec is None or rec["state"] == job.state and rec["error"] == job.last_error:
                    return
                rec["state"], rec["error"] = job.state, job.last_error
                item = self._items.get(self._mt_by_mid.get(rec["message_id"], ""))
                if item is not None and item["receipts"].get(rec["message_id"]) is rec:
                    self._changed(item)
                return
            item = self._items.get(job.id)
            if item is None:
                return
            new = {"state": job.state, "waiting_bind": job.waiting_link, "redeliveries": job.redeliveries,
                   "last_status": job.last_status, "error": job.last_error}
            if all(item[k] == v for k, v in new.items()):
                return
            item.update(new)
            self._changed(item)

    def mt_stored(self, msg: Any, receipt_asked: bool) -> None:
        """A whole MT went into the mailbox (`msg`: its `StoredMessage`); call before `Mailbox.put`.
        `receipt_asked`: its submit_sm asked for a delivery receipt (registered_delivery)."""
        item_id = f"mt{next(self._mt_ids)}"
        key = (msg.to, msg.id, msg.received_at)
        item = {
            "kind": "mt", "id": item_id, "msisdn": msg.to, "peer": msg.sender, "text": msg.text,
            "parts": msg.parts, "data_coding": msg.data_coding, "t": msg.received_at,
            "message_ids": list(msg.message_ids), "receipts": {}, "receipt_asked": receipt_asked, "inbox": "waiting",
            "_key": key,
        }
        with self._cond:
            for mid in item["message_ids"]:
                rec = self._early.pop(mid, None)
                if rec is not None:
                    item["receipts"][mid] = rec
                self._mt_by_mid[mid] = item_id
            self._mt_by_key[key] = item_id
            self._add(item)

    def receipt_queued(self, job_id: str, message_id: str, msisdn: str, stat: str, err: str) -> None:
        """The SMSC queued a delivery receipt (job `job_id`) for MT part `message_id`."""
        rec = {"message_id": message_id, "stat": stat, "err": err, "state": "queued", "error": "", "job": job_id}
        with self._cond:
            self._receipts[job_id] = rec
            _trim(self._receipts, KEEP_RECEIPTS)
            item = self._items.get(self._mt_by_mid.get(message_id, ""))
            if item is not None and item["msisdn"] == msisdn and message_id not in item["receipts"]:
                item["receipts"][message_id] = rec
                self._changed(item)
            else:  # the part's message is not whole yet (or the id is reused by a newer message)
                self._early[message_id] = rec
                _trim(self._early, KEEP_RECEIPTS)

    def picked_up(self, msisdn: str, messages: list[Any]) -> None:
        """A handset took `messages` from the inbox (`Mailbox.on_take`)."""
        with self._cond:
            for msg in messages:
                item = self._items.get(self._mt_by_key.get((msg.to, msg.id, msg.received_at), ""))
                if item is not None and item["inbox"] != "picked up":
                    item["inbox"] = "picked up"
                    self._changed(item)

    def bind(self, event: str, info: dict[str, Any], binds: list[dict[str, Any]]) -> None:
        """A bind opened or closed (`event`); `binds` are the ones open after it."""
        self.publish("bind", {"event": event, "bind": info, "binds": binds, "t": time.time()})

    def submit(self, entry: dict[str, Any]) -> None:
        """A submit_sm answered with an error status, or never answered (status None)."""
        self.publish("submit", entry)

    # ------------------------------------------------------------------ reading (control API side)
    @property
    def seq(self) -> int:
        with self._cond:
            return self._seq

    def conversation(self, msisdn: str, limit: int = CONVERSATION_MAX) -> dict[str, Any]:
        """{"msisdn", "seq", "items"}: the latest items of `msisdn`, oldest first."""
        with self._cond:
            items = [self._public(i) for i in self._items.values() if i["msisdn"] == msisdn]
            seq = self._seq
        items.sort(key=lambda i: (i["t"], i["seq"]))
        return {"msisdn": msisdn, "seq": seq, "items": [_strip(i) for i in items[-limit:]]}

    def msisdns(self, limit: int = 50) -> list[str]:
        """MSISDNs of the latest items, most recent first."""
        out: list[str] = []
        with self._cond:
            for item in reversed(self._items.values()):
                if item["msisdn"] not in out:
                    out.append(item["msisdn"])
                    if len(out) >= limit:
                        break
        return out

    def recent(self, upto: int, limit: int = RECENT_EVENTS) -> list[tuple[int, str, dict[str, Any]]]:
        """The latest `limit` events kept with a sequence number up to `upto`, oldest first: what a
        page opened now shows in its log (the live feed goes on after `upto`)."""
        with self._cond:
            out = [ev for ev in self._ring if ev[0] <= upto][-limit:]
        return [(n, kind, _strip(p) if kind == "item" else p) for n, kind, p in out]

    def wait(self, after: int, timeout: float) -> list[tuple[int, str, dict[str, Any]]] | None:
        """Events with a sequence number above `after`; when there are none, waits up to `timeout`
        seconds for one. ``None``: some of them are no longer kept (take a fresh snapshot).
        Returns at once (``[]``) once `close` was called."""
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            if self._closed:
                return []
            if self._seq <= after:
                return []
            oldest = self._ring[0][0] if self._ring else self._seq + 1
            if after < oldest - 1:
                return None
            out = []
            for ev in reversed(self._ring):
                if ev[0] <= after:
                    break
                out.append(ev)
        out.reverse()
        return [(n, kind, _strip(p) if kind == "item" else p) for n, kind, p in out]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake every reader for good (the simulator stops)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _strip(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its private fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}
