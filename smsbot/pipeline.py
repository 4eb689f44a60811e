"""The pipeline: MOs and receipts read from the SMSC -> batches -> Redis round trips -> responses.

This module owns the order of work between the socket and Redis: which MOs go into the next
batch, how many round trips are in flight, and what each round trip carries besides the MOs'
scripts (records of accepted replies, MT records, receipts, cleared redelivery guards). It never
touches a link: each MO and receipt comes with an opaque `ReplyTo` (`smsbot.session`), and the
responses a finished round trip produced are *returned* (`Resp`: the `ReplyTo`, the status, the
MO's guard) for the transport to write. Its replies go on to the outbox (`OutboxSender.enqueue`).

Rules:

* **One subscriber, one order.** Round trips travel on different connections; an MO of a
  subscriber with an MO in a round trip still in flight waits for it.
* **Flow control.** While more reply parts than the high-water mark wait for the SMSC, MOs stay
  unacknowledged (the SMSC's window fills and it waits); receipts still go through.
* **Nothing acknowledged unstored.** A deliver_sm/data_sm gets status 0 only once its effect and
  reply are stored; Redis out of reach or an unknown outcome gets a temporary error
  (ESME_RX_T_APPN): the SMSC delivers it again.
* **Redelivery guard.** Each handled MO leaves a guard in Redis (main.lua) marked with the token
  of the sender's session (`smsbot.identity`) and holding what the MO was answered. The guard goes
  back with its MO's resp; the link asks the SMSC to confirm it read it and returns it once it
  has (`Received.confirmed`, given to `confirmed`); then the guards are gathered for
  `CLEARS_HOLD_S` and deleted by one DEL before the MO scripts of the next round trip (one of
  their own when nothing else is going to Redis), at once when an MO with the same guard comes. A guard that
  outlives its session — the link died before the SMSC read the resp, the process died, or a round
  trip's outcome is unknown (then the token changes at once) — marks the same MO arriving again
  (the SMSC's redelivery, or the person repeating it) as a suspected redelivery: nothing is applied
  again and it is answered as before (main.lua). A "try again" resp leaves the guard in place: the
  MO comes back. Within one session the token is the same, so a repeated text is a new MO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

from smsbot import log
from smsbot.dispatch import Dispatcher, MoOutcome, PreparedBatch
from smsbot.identity import SenderIdentity
from smsbot.live import Live
from smsbot.messages import Inbound, Receipt, Status
from smsbot.outbox import OutboxSender
from smsbot.session import ReplyTo
from smsbot.store import KeyWrite, Store
from smsbot.webhooks.events import RECEIPT, receipt_command as receipt_event

_log = log.get("smsbot.pipeline")
MAX_IN_FLIGHT = 2  # Redis round trips of MO batches in flight at once (each on its own connection)
# MOs per round trip at most: under sustained load Redis works on one batch while the bot finishes
# the other; 50 kept both busy best on the benchmark (100: each waited longer for the other)
BATCH_MAX = 50
CLEARS_HOLD_S = 0.05  # confirmed guards are gathered this long (one DEL for many), then ride a round trip
SPLIT_FROM = 8  # with nothing in flight, this many ready MOs are split into two batches
ACKS_PER_FLUSH = 512

Mo = tuple[Inbound, ReplyTo]  # the MO and where its resp goes
ReceiptIn = tuple[Receipt, ReplyTo]
Resp = tuple[ReplyTo, int, str | None]  # where, the status, the MO's redelivery guard (to confirm)


@dataclass
class _Pending:
    """A round trip in flight: a batch of MOs and receipts, or only records."""

    batch: PreparedBatch
    mos: list[Mo]
    receipts: list[ReceiptIn]
    acks: list[tuple[str, str]]
    writes: list[KeyWrite]
    parts: int  # submits the acks stand for
    clears: list[str]
    started: float
    sender: SenderIdentity


class Sessions(Protocol):
    """The sender side the pipeline works for (`smsbot.delivery.Delivery`)."""

    identity: SenderIdentity  # what the next batch is prepared for

    def new_session(self) -> None: ...  # guards of earlier sessions now mark possible redeliveries

    def suspect(self) -> None: ...  # a round trip failed: the lease is uncertain until renewed


class Pipeline:
    def __init__(self, live: Live, store: Store, dispatcher: Dispatcher, sender: OutboxSender, sessions: Sessions, *,
                 on_batch: Callable[[list[MoOutcome], float], None] | None = None,
                 on_receipt: Callable[[Receipt], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """`on_batch`: outcomes and latency of each answered batch; `on_receipt`: each receipt
        stored (metrics, the MO log); `clock`: monotonic seconds (when confirmed guards are due)."""
        self.clock = clock
        self.live = live
        self.store = store
        self.dispatcher = dispatcher
        self.sender = sender
        self.sessions = sessions
        self.report_batch = on_batch
        self.report_receipt = on_receipt
        self.receipt_events = live.settings.webhooks_want(RECEIPT)  # `webhooks` changes need a restart
        self.deferred: list[Mo] = []
        self.receipts: list[ReceiptIn] = []
        self.pending: list[_Pending] = []  # oldest first
        self._records: list[_Pending] = []  # record-only round trips in flight
        self._stalled = False  # the ready MOs all belong to subscribers with a batch in flight
        self._clears: list[str] = []  # guards whose resps the SMSC has read: delete them
        self._clears_since = 0.0  # when the oldest of them was confirmed (monotonic)
        self._acks_flushed_at = 0.0

    # -- sessions ---------------------------------------------------------------------------------
    def link_lost(self) -> None:
        """The link died: batches in flight complete (their effects are stored, their replies kept);
        their resps are lost with the link, so their guards stay; MOs not yet batched were never
        acknowledged and will come again."""
        self.complete_all()  # their resps go nowhere: the link is gone
        self.deferred = []
        self.sessions.new_session()

    # -- input --------------------------------------------------------------------------------------
    def on_mo(self, mo: Inbound, reply: ReplyTo) -> None:
        self.deferred.append((mo, reply))
        self._stalled = False

    def on_receipt(self, receipt: Receipt, reply: ReplyTo) -> None:
        self.receipts.append((receipt, reply))

    def confirmed(self, guards: list[str]) -> None:
        """Guards of resps the SMSC has read (a link's `Received.confirmed`) may go: once they have
        waited `CLEARS_HOLD_S`, by the next MO batch or a round trip of their own (`clears_due`); at
        once by an MO batch holding the same text again (`_take_clears`), so a repeated text meets
        no guard whose resp was read."""
        if guards:
            if not self._clears:
                self._clears_since = self.clock()
            self._clears.extend(guards)

    @property
    def clears_waiting(self) -> bool:
        """Guards the SMSC has confirmed wait for a round trip to delete them."""
        return bool(self._clears)

    def clears_due(self, now: float) -> bool:
        """Confirmed guards have waited long enough for an MO batch to carry them: they go alone."""
        return bool(self._clears) and now - self._clears_since >= CLEARS_HOLD_S

    def clears_wakeup(self, now: float) -> float | None:
        """Seconds until `clears_due` (None: no guard waits)."""
        return max(0.0, self._clears_since + CLEARS_HOLD_S - now) if self._clears else None

    # -- scheduling -----------------------------------------------------------------------------------
    @property
    def high_water(self) -> int:
        """Queued parts beyond which no more MOs are dispatched until the SMSC takes replies."""
        return 2 * self.live.settings.smsc.submit_window + 16

    def startable(self) -> bool:
        return len(self.pending) < MAX_IN_FLIGHT and self.ready() and not self._stalled

    def ready(self) -> bool:
        return bool(self.receipts or (self.deferred and self.sender.backlog <= self.high_water))

    def roundtrips(self) -> list:
        """Round trips whose answers are awaited (for select)."""
        return [p.batch.roundtrip for p in (*self.pending, *self._records)
                if p.batch.roundtrip is not None and not p.batch.roundtrip.done]

    def buffered(self) -> bool:
        return any(rt.buffered() for rt in self.roundtrips())

    def start_batches(self) -> list[Resp]:
        """Start round trips while the pipeline may; the resps of batches that finished at once (no
        MO for Redis, or a failure)."""
        out: list[Resp] = []
        while len(self.pending) < MAX_IN_FLIGHT and self.ready():
            if not self._start_batch(out):
                self._stalled = True  # what waits belongs to subscribers in flight: no busy loop
                break
        return out

    def _start_batch(self, out: list[Resp]) -> bool:
        """One Redis round trip for a batch of MOs, receipts, records and cleared guards: sent now,
        answered in `_finish` when Redis replies."""
        started = self.clock()
        cap = BATCH_MAX if self.sender.backlog <= self.high_water else 0
        if not self.pending and len(self.deferred) >= SPLIT_FROM:
            cap = min(cap, (len(self.deferred) + 1) // 2)  # two halves in flight overlap with the SMSC
        if not self.pending:
            mos, self.deferred = self.deferred[:cap], self.deferred[cap:]
        else:
            busy = {mo.msisdn for p in self.pending for mo, _r in p.mos}
            mos, keep = [], []
            deferred = self.deferred
            for i, item in enumerate(deferred):
                if len(mos) >= cap:
                    keep.extend(deferred[i:])
                    break
                (keep if item[0].msisdn in busy else mos).append(item)
            self.deferred = keep
        if not mos and not self.receipts:
            return False
        # Accepted replies are recorded in a later round trip, but not in every one: one XDEL per
        # stream carrying many ids costs Redis less than one per small batch. They wait at most
        # delivery.ack_flush_seconds, or until they hold back further submits (`smsbot.outbox`);
        # MT records go in the next round trip (a delivery receipt may follow its submit_sm_resp).
        sender = self.sender
        if (sender.has_writes or sender.blocked_by_records or sender.pending_count >= ACKS_PER_FLUSH
                or started - self._acks_flushed_at >= self.live.settings.delivery.ack_flush_seconds):
            acks, writes, parts = sender.take_pending()
            self._acks_flushed_at = started
        else:
            acks, writes, parts = [], [], 0
        receipts, self.receipts = self.receipts, []
        identity = self.sessions.identity
        clears: list[str] = []
        try:
            batch = self.dispatcher.prepare([mo for mo, _r in mos], identity, acks, writes,
                                            self._receipt_commands(receipts))
            clears = self._take_clears(started, batch)
            batch.head = self.store.delete_commands(clears)
            self.dispatcher.start(batch)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            out += self._failed(e, mos, receipts, acks, writes, parts, clears)
            return True
        pending = _Pending(batch, mos, receipts, acks, writes, parts, clears, started, identity)
        self.pending.append(pending)
        if batch.roundtrip is None or batch.roundtrip.done:
            out += self._finish(pending)
        return True

    def _take_clears(self, now: float, batch: PreparedBatch) -> list[str]:
        """The confirmed guards this MO batch deletes before its scripts: none until the oldest has
        waited `CLEARS_HOLD_S` (one DEL then takes many: at window 1 one per MO cost a command per
        MO), except when one of its MOs has the same guard — the same text again, whose script
        must not meet a guard whose resp was read (nor have its own guard deleted after it)."""
        if not self._clears:
            return []
        if now - self._clears_since < CLEARS_HOLD_S:
            held = set(self._clears)
            if not any(oc.guard in held for oc in batch.outcomes):
                return []
        clears, self._clears = self._clears, []
        return clears

    def _restore_clears(self, clears: list[str]) -> None:
        """Guards whose deletion failed (they were due): first in the next round trip."""
        if clears:
            self._clears[:0] = clears
            self._clears_since = float("-inf")

    def record(self) -> bool:
        """A round trip of records alone (nothing else is going to Redis soon): the accepted
        replies it records let further submits out. False when nothing needed writing."""
        acks, writes, parts = self.sender.take_pending()
        clears, self._clears = self._clears, []
        if not acks and not writes and not clears:
            return False
        self._acks_flushed_at = self.clock()
        identity = self.sessions.identity
        batch = self.dispatcher.prepare([], identity, acks, writes, head=self.store.delete_commands(clears))
        self.dispatcher.start(batch)
        pending = _Pending(batch, [], [], acks, writes, parts, clears, self._acks_flushed_at, identity)
        if batch.roundtrip is None or batch.roundtrip.done:
            self._finish_records(pending)
        else:
            self._records.append(pending)
        return True

    def _receipt_commands(self, receipts: list[ReceiptIn]) -> list[tuple]:
        """What a round trip carries after the scripts and records: the receipts."""
        ttl = self.live.settings.dispatch.mt_record_seconds
        at = int(time.time() * 1000)
        return [*(self.store.receipt_command(r, reply.bind, at, ttl) for r, reply in receipts),
                *(receipt_event(self.store.keys, r.message_id, r.state, r.error, reply.bind, at)  # for webhooks (smsbot.webhooks)
                  for r, reply in receipts if self.receipt_events)]

    # -- answers ----------------------------------------------------------------------------------------
    def poll(self, readable: list) -> tuple[bool, list[Resp]]:
        """Collect the answers that arrived: whether an MO batch was answered, and the resps."""
        answered = False
        out: list[Resp] = []
        for p in list(self._records):
            rt = p.batch.roundtrip
            if rt is not None and (rt.done or rt in readable or rt.buffered()):
                if self._poll_one(p):
                    self._records.remove(p)
                    self._finish_records(p)
        for p in list(self.pending):
            rt = p.batch.roundtrip
            if rt is not None and (rt.done or rt in readable or rt.buffered()):
                if self._poll_one(p):
                    out += self._finish(p)
                    answered = True
        return answered, out

    def _poll_one(self, p: _Pending) -> bool:
        rt = p.batch.roundtrip
        assert rt is not None
        try:
            if rt.done or rt.poll():
                p.batch.raw = rt.replies
                return True
        except Exception as e:  # Redis failed mid-round trip: the outcome is unknown
            p.batch.error = e
            return True
        return False

    def complete_all(self) -> list[Resp]:
        """Wait for every round trip in flight (stop, lost link): never drop their replies. Their resps."""
        for p in [*self._records, *self.pending]:
            rt = p.batch.roundtrip
            if rt is not None and not rt.done:
                try:
                    p.batch.raw = rt.wait()
                except Exception as e:
                    p.batch.error = e
            elif rt is not None:
                p.batch.raw = rt.replies
        records, self._records = self._records, []
        for p in records:
            self._finish_records(p)
        return [resp for p in list(self.pending) for resp in self._finish(p)]

    def _finish_records(self, p: _Pending) -> None:
        result = self.dispatcher.finish(p.batch)
        if result.acks_flushed:
            self.sender.recorded(p.acks)
        else:
            self.sender.restore_pending(p.acks, p.writes, p.parts)
            self._restore_clears(p.clears)
            self.sessions.suspect()

    def _finish(self, p: _Pending) -> list[Resp]:
        self.pending.remove(p)
        self._stalled = False
        try:
            result = self.dispatcher.finish(p.batch)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            return self._failed(e, p.mos, p.receipts, p.acks, p.writes, p.parts, p.clears)
        if result.acks_flushed:
            self.sender.recorded(p.acks)
        else:
            self.sender.restore_pending(p.acks, p.writes, p.parts)
            self._restore_clears(p.clears)
            if p.sender == self.sessions.identity:
                self.sessions.new_session()  # the outcome of its MOs is unknown: their guards now hold
            self.sessions.suspect()
        receipt_status = Status.ROK if result.acks_flushed else Status.RX_T_APPN
        out: list[Resp] = []
        for r, reply in p.receipts:
            out.append((reply, receipt_status, None))
            if self.report_receipt is not None and result.acks_flushed:
                self.report_receipt(r)
        for (_mo, reply), oc in zip(p.mos, result.outcomes):
            guard = oc.guard if oc.status == Status.ROK else None  # a "try again" leaves the guard: the MO comes back
            if guard and guard in self._clears:  # its key now holds this MO's guard (a long MO completed): keep it
                self._clears.remove(guard)
            out.append((reply, oc.status, guard))
        if self.report_batch is not None and p.mos:
            self.report_batch(result.outcomes, self.clock() - p.started)
        self.sender.enqueue(result.entries)
        return out

    def _failed(self, error: Exception, mos: list[Mo], receipts: list[ReceiptIn], acks: list[tuple[str, str]],
                writes: list[KeyWrite], parts: int, clears: list[str]) -> list[Resp]:
        """A bug in handling a batch: log it, keep the records for later, ask the SMSC to redeliver."""
        _log.exception("dispatch_failed", error=repr(error))
        self.sender.restore_pending(acks, writes, parts)
        self._restore_clears(clears)
        self.sessions.new_session()
        return [(reply, Status.RX_T_APPN, None) for _x, reply in (*mos, *receipts)]

    def refuse_deferred(self) -> list[Resp]:
        """Stopping: MOs not yet batched get a temporary error (the SMSC delivers them again)."""
        deferred, self.deferred = self.deferred, []
        return [(reply, Status.RX_T_APPN, None) for _mo, reply in deferred]

