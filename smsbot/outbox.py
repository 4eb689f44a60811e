"""The sending side of the outbox: reply intents from Redis -> submit_sm PDUs -> accepted -> recorded.

An outbox or queue entry (a Redis stream entry: to, from, lang, tpl, data, mo) stays in its stream
(and in this consumer's pending list) until the SMSC has accepted every part of it (submit_sm_resp
0); then it is "accepted" here and waits to be recorded (XDEL / XACK) in a Redis round trip the
transport carries (`take_pending`). Which entries this sender may hold at all is
`smsbot.delivery`'s business. This module owns rendering (with `smsbot.replies`, the configuration's
`live.replies`: never back through the router), the parts (its `Submits` encoder's: submit_sm or
CMPP_SUBMIT, `smsbot.submits`), the in-flight
window, the TPS limit, retry of throttled parts, and one rule of crash safety: parts in flight plus
parts accepted but not yet recorded never exceed the window, so a crash re-sends at most one
window. The socket is read by `smsbot.session` and written by `smsbot.outgoing`.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

from smsbot import log
from smsbot.keys import Keys
from smsbot.live import Live
from smsbot.messages import Status
from smsbot.session import SequenceGenerator
from smsbot.store import KeyWrite
from smsbot.submits import SmppSubmits, Submits

_log = log.get("smsbot.outbox")
RETRY_STATUSES = frozenset({Status.RTHROTTLED, Status.RMSGQFUL, Status.RSYSERR})
THROTTLE_BACKOFF_S = 1.0
RECORDED_KEPT = 1024  # recorded entries remembered (far more than the round trips in flight hold)


@dataclass(slots=True)
class OutgoingMt:
    stream: str
    entry_id: str
    to: str
    short_code: str
    tpl: str
    parts: list[bytes]  # each part's body (submit_sm or CMPP_SUBMIT, `smsbot.submits`), encoded once
    correlation: str
    done: set[int] = field(default_factory=set)
    message_ids: dict[int, str] = field(default_factory=dict)
    attempts: int = 0
    failed: bool = False  # a part was refused for good: resps of its other parts in flight are moot
    dropped: bool = False  # forgotten with the lease (drop_unsent): resps of its parts in flight are moot


@dataclass(slots=True)
class _Part:
    mt: OutgoingMt
    index: int
    not_before: float = 0.0


class OutboxSender:
    def __init__(self, live: Live, sequences: SequenceGenerator, keys: Keys, *,
                 on_sent: Callable[[OutgoingMt], None] | None = None,
                 on_failed: Callable[[OutgoingMt, int], None] | None = None,
                 on_retry: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, submits: Submits | None = None):
        """`on_sent`, `on_failed` (status), `on_retry` (reason): what the bot counts (metrics);
        `submits`: the link protocol's encoder (`smsbot.submits.for_protocol`; SMPP's by default)."""
        self.live = live
        self.keys = keys
        self.submits = submits if submits is not None else SmppSubmits(live)
        self._writes: list[KeyWrite] = []
        self.on_sent = on_sent
        self.on_failed = on_failed
        self.on_retry = on_retry
        self.sequences = sequences
        self.clock = clock
        smsc = live.settings.smsc  # window and TPS limit: fixed for the process (a reload needs a restart)
        self.window = smsc.submit_window
        self.max_tps = smsc.max_tps
        self._queue: deque[_Part] = deque()
        self._inflight: dict[int, tuple[_Part, float]] = {}
        self._known: set[tuple[str, str]] = set()  # entries held: queued, in flight, or accepted until recorded
        # entries recorded lately: a round trip on another connection may still hand one back (a
        # redelivered MO's script read it just before the XDEL ran); stream ids are never reused
        self._recorded: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._acks: list[tuple[str, str]] = []  # accepted (or refused for good), not yet recorded
        self._unrecorded_parts = 0  # submits behind `_acks`
        self._accepted_open = 0  # accepted parts of replies not yet whole: unrecorded too (a reply is recorded whole)
        self._oldest_ack_at = 0.0
        # TPS limit: at most `_tps_n` submit_sm within any `_tps_span` seconds (5 TPS: 5 per second),
        # as an SMSC counts; a token bucket holding max_tps tokens let ~2x max_tps through in one second
        self._tps_n = max(1, int(self.max_tps)) if self.max_tps > 0 else 0
        self._tps_span = self._tps_n / self.max_tps if self.max_tps > 0 else 0.0
        self._sent_at: deque[float] = deque()  # send times within the last _tps_span
        self.sent_total = 0
        self.failed_total = 0
        self.bind = ""  # the bind the parts go out on (MT records: receipts are matched per bind)

    def bound(self, bind: str) -> None:
        """The parts go out on `bind` from now on (its name goes into MT records)."""
        self.bind = bind

    # -- in ---------------------------------------------------------------------------------------
    def enqueue(self, entries: list[tuple[str, str, dict[str, str]]]) -> None:
        for stream, entry_id, fields in entries:
            key = (stream, entry_id)
            if key in self._known or key in self._recorded:
                continue
            try:
                mt = self._build(stream, entry_id, fields)
            except Exception as e:  # a poison entry must not block the outbox: record and drop it
                _log.error("outbox_entry_unrenderable", entry=entry_id, error=repr(e))
                if not self._acks:
                    self._oldest_ack_at = self.clock()
                self._acks.append(key)
                self.failed_total += 1
                continue
            self._known.add(key)
            for i in range(len(mt.parts)):
                self._queue.append(_Part(mt, i))

    def _build(self, stream: str, entry_id: str, f: dict[str, str]) -> OutgoingMt:
        to, short_code, lang = f["to"], f["from"], f.get("lang", "zh-CN")
        text = self.live.replies.render_text(f["tpl"], f.get("data") or "{}", lang, short_code)
        parts = self.submits.parts(to, short_code, text, f)
        return OutgoingMt(stream, entry_id, to, short_code, f["tpl"], parts, f.get("mo", ""))

    # -- out --------------------------------------------------------------------------------------
    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def room(self) -> int:
        """Submits that may go out now: the window less those in flight and those accepted but not
        yet recorded, whole replies or parts of one (a crash re-sends them all, never more than one
        window)."""
        return self.window - len(self._inflight) - self._unrecorded_parts - self._accepted_open

    @property
    def blocked_by_records(self) -> bool:
        """Parts wait only because accepted ones are not recorded yet: record them now."""
        return bool(self._queue) and self._unrecorded_parts > 0 and self.room <= 0

    def take(self, may_send: bool = True) -> list[bytes]:
        """Encode as many queued parts as the window, the records and the TPS limit allow right now
        (none when `may_send` is false: this sender's lease is not surely held)."""
        out: list[bytes] = []
        if not may_send:
            return out
        now = self.clock()
        while self._sent_at and now - self._sent_at[0] >= self._tps_span:
            self._sent_at.popleft()
        deferred: list[_Part] = []
        limit = self.window - self._unrecorded_parts - self._accepted_open
        while self._queue:
            # a reply of more parts than the window still goes out, a part at a time while nothing
            # else is in flight (a crash then re-sends that reply: the one case beyond the window)
            if len(self._inflight) >= limit and (self._inflight or not self._queue[0].mt.done):
                break
            if self._tps_n and len(self._sent_at) >= self._tps_n:
                break
            part = self._queue.popleft()
            if part.not_before > now:
                deferred.append(part)
                continue
            seq = self.sequences.next_sequence()
            self._inflight[seq] = (part, now)
            out.append(self.submits.with_sequence(part.mt.parts[part.index], seq))
            if self._tps_n:
                self._sent_at.append(now)
        self._queue.extendleft(reversed(deferred))
        return out

    def next_wakeup(self) -> float | None:
        """Seconds until a deferred part or a TPS token becomes sendable (None: nothing waiting)."""
        if not self._queue or self.room <= 0:
            return None
        now = self.clock()
        waits = [max(0.0, p.not_before - now) for p in self._queue if p.not_before > now]
        tps_full = self._tps_n and len(self._sent_at) >= self._tps_n
        if tps_full:
            waits.append(max(0.0, self._sent_at[0] + self._tps_span - now))
        if len(waits) < len(self._queue) and not tps_full:
            return 0.0
        return min(waits) if waits else 0.0

    def on_submit_resp(self, sequence: int, status: int, message_id: str) -> bool:
        """Match a submit_sm_resp (or generic_nack) to its part; False when the sequence is not ours."""
        got = self._inflight.pop(sequence, None)
        if got is None:
            return False
        part, _sent_at = got
        mt = part.mt
        if mt.failed or mt.dropped:  # recorded REJECTED already, or another sender's now: count nothing, resend nothing
            return True
        if status == Status.ROK:
            mt.done.add(part.index)
            mt.message_ids[part.index] = message_id
            if len(mt.done) == len(mt.parts):
                self._accepted_open -= len(mt.done) - 1
                self._complete(mt)
            else:
                self._accepted_open += 1
            return True
        if status in RETRY_STATUSES:
            part.not_before = self.clock() + THROTTLE_BACKOFF_S
            self._queue.appendleft(part)
            _log.warning("submit_throttled", status=hex(status), correlation=mt.correlation)
            if self.on_retry is not None:
                self.on_retry("throttled" if status == Status.RTHROTTLED else "queue_full" if status == Status.RMSGQFUL else "system_error")
            return True
        _log.error("submit_rejected", status=hex(status), correlation=mt.correlation, to=mt.to, mt_id=f"x{mt.entry_id}")  # `smsbot mt show <mt_id>`
        mt.failed = True
        self.failed_total += 1
        self._writes.append(KeyWrite(self.keys.mt_rejected(f"x{mt.entry_id}"), {
            **self._record(mt), "state": "REJECTED", "status": hex(status), "part": str(part.index + 1),
            "message_ids": ",".join(mt.message_ids[i] for i in sorted(mt.message_ids)),
        }, self.live.settings.dispatch.mt_record_seconds))
        if self.on_failed is not None:
            self.on_failed(mt, status)
        self._accepted_open -= len(mt.done)
        self._finish(mt)
        return True

    @property
    def records_enabled(self) -> bool:
        mode = self.live.settings.dispatch.mt_records
        return mode == "always" or (mode == "auto" and bool(self.live.settings.smsc.registered_delivery))

    def _record(self, mt: OutgoingMt) -> dict[str, str]:
        return {"to": mt.to, "from": mt.short_code, "tpl": mt.tpl, "correlation": mt.correlation, "bind": self.bind,
                "entry": mt.entry_id, "parts": str(len(mt.parts)), "at": str(int(time.time() * 1000))}

    def _complete(self, mt: OutgoingMt) -> None:
        self.sent_total += 1
        if not self.records_enabled:
            if self.on_sent is not None:
                self.on_sent(mt)
            self._finish(mt)
            return
        base = self._record(mt)
        ttl = self.live.settings.dispatch.mt_record_seconds
        for i, mid in sorted(mt.message_ids.items()):
            self._writes.append(KeyWrite(self.keys.mt(mid), {**base, "part": str(i + 1), "state": "ENROUTE"}, ttl, push=True))
        if self.on_sent is not None:
            self.on_sent(mt)
        self._finish(mt)

    def _finish(self, mt: OutgoingMt) -> None:
        if not self._acks:
            self._oldest_ack_at = self.clock()
        self._acks.append((mt.stream, mt.entry_id))
        self._unrecorded_parts += len(mt.done) + (1 if mt.failed else 0)
        # after a permanent failure, drop its parts still queued (on success none are: all are done)
        if mt.failed and any(p.mt is mt for p in self._queue):
            self._queue = deque(p for p in self._queue if p.mt is not mt)

    def expired(self, timeout: float) -> list[int]:
        """Sequences whose submit_sm_resp is overdue (the link is suspect). Asked every loop turn:
        the parts in flight are kept oldest first (sent in clock order), so the look stops at the
        first one not overdue."""
        now = self.clock()
        out: list[int] = []
        for seq, (_p, at) in self._inflight.items():
            if now - at <= timeout:
                break
            out.append(seq)
        return out

    def requeue_inflight(self) -> int:
        """After a lost bind: parts sent but unanswered go back to the front of the queue (not those
        of a reply already refused for good: its other parts alone would reach the handset)."""
        parts = [p for p, _at in sorted(self._inflight.values(), key=lambda x: x[1]) if not p.mt.failed]
        self._inflight.clear()
        self._queue.extendleft(reversed(parts))
        return len(parts)

    # -- what the next Redis round trip must carry: records of accepted entries, MT records ----------
    @property
    def pending_count(self) -> int:
        """Outbox acks and MT records waiting for the next Redis round trip."""
        return len(self._acks) + len(self._writes)

    @property
    def has_writes(self) -> bool:
        return bool(self._writes)

    def ack_age(self) -> float:
        """Seconds the oldest unrecorded acceptance has waited (0 when none waits)."""
        return self.clock() - self._oldest_ack_at if self._acks else 0.0

    def take_pending(self) -> tuple[list[tuple[str, str]], list[KeyWrite], int]:
        """Acks and MT records for a round trip, and the submits they stand for. Once the round trip
        is written they count as recorded (Redis executes what it was sent even if we die next);
        `recorded` when it is answered, `restore_pending` when it failed."""
        acks, self._acks = self._acks, []
        writes, self._writes = self._writes, []
        parts, self._unrecorded_parts = self._unrecorded_parts, 0
        return acks, writes, parts

    def restore_pending(self, acks: list[tuple[str, str]], writes: list[KeyWrite], parts: int) -> None:
        if acks and not self._acks:
            self._oldest_ack_at = self.clock()
        self._acks[:0] = acks
        self._writes[:0] = writes
        self._unrecorded_parts += parts

    def recorded(self, acks: list[tuple[str, str]]) -> None:
        """These entries are gone from Redis (XDEL/XACK answered). One may still come back from a
        script that read it just before (a redelivered MO handing back its replies, in a round
        trip on another connection): it is remembered and not sent again."""
        done = self._recorded
        for key in acks:
            self._known.discard(key)
            done[key] = None
        while len(done) > RECORDED_KEPT:
            done.popitem(last=False)

    def add_write(self, write: KeyWrite) -> None:
        self._writes.append(write)

    def drop_unsent(self) -> int:
        """This sender lost its lease: forget every part not yet sent (their entries are adopted
        back through the queue, by a sibling or by this process under its new name)."""
        dropped = {(p.mt.stream, p.mt.entry_id) for p in self._queue}
        forgotten = {id(p.mt): p.mt for p in self._queue if not p.mt.failed}
        for mt in forgotten.values():
            mt.dropped = True
            self._accepted_open -= len(mt.done)  # their accepted parts are whoever adopts them's now
        self._queue.clear()
        self._known -= dropped
        return len(dropped)

    @property
    def idle(self) -> bool:
        return not self._queue and not self._inflight
