"""The pipeline: MOs and receipts read from the SMSC -> batches -> Redis round trips -> responses.

This module owns the order of work between the socket and Redis: which MOs go into the next
batch, how many round trips are in flight, and what each round trip carries besides the MOs'
scripts (records of accepted replies, MT records, receipts, the sessions' guard watermarks). It never
touches a link: each MO and receipt comes with an opaque `ReplyTo` (`smsbot.session`), and the
responses a finished round trip produced are *returned* (`Resp`: the `ReplyTo`, the status, the
MO's guard) for the transport to write. Its replies go on to the outbox (`OutboxSender.enqueue`).

Rules:

* **One subscriber, one order.** Round trips travel on different connections; an MO of a
  subscriber with an MO in a round trip still in flight waits for it, and so does one of a
  subscriber with an MO waiting for its slot (below).
* **A slot mid-migration holds only its MOs** (Redis Cluster). An MO script Redis did not run
  because its slot is moving (TRYAGAIN, `smsbot.dispatch.SLOT_MIGRATING`: nothing applied, no
  guard) comes back from its round trip after a short try (`Dispatcher.start` with
  ``give_back_tryagain``), the rest of its batch is answered at once, and the MO goes back in front
  of the MOs not yet batched (`slot_waits`), tried again after a pause (`SLOT_RETRY_PAUSES`; the
  transport's select wakes for it: `retry_wakeup`); `SLOT_WAIT_S` after its first try it is
  refused with a temporary error, unapplied, and the SMSC redelivers it.
* **Flow control.** While more reply parts than the high-water mark wait for the SMSC, MOs stay
  unacknowledged (the SMSC's window fills and it waits); receipts still go through.
* **Nothing acknowledged unstored.** A deliver_sm/data_sm gets status 0 only once its effect and
  reply are stored; Redis out of reach or an unknown outcome gets a temporary error
  (ESME_RX_T_APPN): the SMSC delivers it again.
* **Redelivery guard.** Each handled MO leaves a guard in the subscriber's MO state (main.lua,
  `smsbot.records`) marked with the token of the sender's session (`smsbot.identity`) and the
  number of its batch, and holding what the MO was answered. Every batch gets the next number;
  the batch's number goes back with its MOs' resps as their guard, the link's write side
  (`smsbot.outgoing`) asks the SMSC to confirm it read them and returns them once it has
  (`Outgoing.answered`, given to `confirmed`). A session's *watermark* is the number below which every batch's resps are
  confirmed (or carried no guard): its own scripts get it with each call (a guard of theirs up to
  it is dropped), and other sessions' scripts read it from Redis (``Keys.marks``), where it is
  written `MARKS_HOLD_S` after it moved (one HSET for many confirmations, before the MO scripts
  of the next round trip, or in one of its own when nothing else is going to Redis), and before
  any script of the next session when the session changes. A guard that outlives its session's
  watermark — the link died before the SMSC read the resp, the process died, or a round trip's
  outcome is unknown (its batch never confirms; the token changes at once) — marks the same MO
  arriving again in another session (the SMSC's redelivery, or the person repeating it) as a
  suspected redelivery: nothing is applied again and it is answered as before (main.lua). A "try
  again" resp carries no guard: the MO comes back. Within one session the token is the same, so a
  repeated text is a new MO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from smsbot import log
from smsbot.dispatch import SLOT_MIGRATING, Dispatcher, MoOutcome, PreparedBatch
from smsbot.identity import SenderIdentity
from smsbot.live import Live
from smsbot.messages import Inbound, Receipt, Status
from smsbot.outbox import OutboxSender
from smsbot.records import mark_value
from smsbot.roundtrip import ClusterRoundtrip
from smsbot.session import ReplyTo
from smsbot.store import KeyWrite, Store
from smsbot.webhooks.events import RECEIPT, receipt_command as receipt_event

_log = log.get("smsbot.pipeline")
MAX_IN_FLIGHT = 2  # Redis round trips of MO batches in flight at once (each on its own connection)
# MOs per round trip at most: under sustained load Redis works on one batch while the bot finishes
# the other; 50 kept both busy best on the benchmark (100: each waited longer for the other)
BATCH_MAX = 50
# a watermark that moved is written this long after (one HSET for many, riding a round trip): until
# then another session's script meeting one of its confirmed guards takes the same MO, repeated
# within it, for a redelivery (answered again, not applied again); at 0.05 s the HSETs were 0.02-0.04
# commands per MO at window 10, at 0.25 s under 0.001 (issue 21: <= 4 commands per MO)
MARKS_HOLD_S = 0.25
SPLIT_FROM = 8  # with nothing in flight, this many ready MOs are split into two batches
ACKS_PER_FLUSH = 512
SLOT_RETRY_PAUSES = (0.05, 0.1, 0.2)  # before each further try of an MO whose slot is moving (then the last)
SLOT_WAIT_S = ClusterRoundtrip.REDIRECT_SECONDS  # an MO waits for its slot this long after its first try, then is refused

Mo = tuple[Inbound, ReplyTo]  # the MO and where its resp goes
ReceiptIn = tuple[Receipt, ReplyTo]
Resp = tuple[ReplyTo, int, str | None]  # where, the status, the MO's redelivery guard: its batch's number (to confirm)


@dataclass
class _Session:
    """One session's guards (a `SenderIdentity` token): the batches whose resps are not all confirmed."""

    token: str
    open: dict[int, int] = field(default_factory=dict)  # batch number -> guarded resps unconfirmed (-1: no answer yet, or never)
    top: int = 0  # the last batch number it was given
    written: int = 0  # the watermark Redis holds (or is being sent)
    shards: set[int] = field(default_factory=set)  # in a cluster: the shards its guards are in (one watermark each)
    ended: float | None = None  # when the next session began (monotonic)

    @property
    def mark(self) -> int:
        """Every batch of this session numbered up to it has its resps confirmed (or had no guard)."""
        return min(self.open) - 1 if self.open else self.top


@dataclass
class _SlotWait:
    """An MO whose script Redis did not run, its slot mid-migration: tried again from `due`."""

    mo: Mo
    since: float  # when its first try started (monotonic)
    due: float = 0.0
    tries: int = 0


@dataclass
class _Pending:
    """A round trip in flight: a batch of MOs and receipts, or only records."""

    batch: PreparedBatch
    mos: list[Mo]
    receipts: list[ReceiptIn]
    acks: list[tuple[str, str]]
    writes: list[KeyWrite]
    parts: int  # submits the acks stand for
    marks: list[tuple[_Session, int]]  # watermarks this round trip writes: the session, what Redis held before
    started: float
    sender: SenderIdentity
    retried: list[_SlotWait] = field(default_factory=list)  # the first len(retried) of `mos`: tries again


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
        self.slot_waits: list[_SlotWait] = []  # MOs whose slot was moving, before `deferred` (oldest first)
        self._stalled_until = 0.0  # the ready MOs all wait for subscribers in flight or for their slot: until then
        self._number = 0  # the last batch number given
        self._sessions: dict[str, _Session] = {}  # by token: the current one, and earlier ones until they are forgotten
        self._current: _Session | None = None
        self._batches: dict[int, _Session] = {}  # batch number -> its session, while resps of it await confirmation
        self._marks_since: float | None = None  # when a watermark first moved past what Redis holds (monotonic)
        self._acks_flushed_at = 0.0

    # -- sessions ---------------------------------------------------------------------------------
    def link_lost(self) -> None:
        """The link died: batches in flight complete (their effects are stored, their replies kept);
        their resps are lost with the link, so their guards stay; MOs not yet batched were never
        acknowledged and will come again."""
        self.complete_all()  # their resps go nowhere: the link is gone
        self.deferred = []
        self.slot_waits = []
        self.sessions.new_session()

    # -- input --------------------------------------------------------------------------------------
    def on_mo(self, mo: Inbound, reply: ReplyTo) -> None:
        self.deferred.append((mo, reply))
        self._stalled_until = 0.0

    def on_receipt(self, receipt: Receipt, reply: ReplyTo) -> None:
        self.receipts.append((receipt, reply))

    def confirmed(self, guards: list[str]) -> None:
        """Guards of resps the SMSC has read (what a link's write side returns from `Outgoing.answered`:
        batch numbers, one per resp): a batch whose every guarded resp is confirmed moves its session's watermark, written
        to Redis `MARKS_HOLD_S` later (`clears_due`; by the next MO batch or a round trip of its own)."""
        for guard in guards:
            number = int(guard)
            session = self._batches.get(number)
            left = session.open.get(number, 0) if session is not None else 0
            if session is None or left <= 0:
                continue
            if left > 1:
                session.open[number] = left - 1
            else:
                self._close(session, number)

    def _close(self, session: _Session, number: int) -> None:
        """Batch `number` needs no confirmation any more: the session's watermark may move."""
        del session.open[number]
        self._batches.pop(number, None)
        if self._marks_since is None and session.mark > session.written:
            self._marks_since = self.clock()

    @property
    def clears_waiting(self) -> bool:
        """A session's watermark moved past what Redis holds: it waits for a round trip."""
        return self._marks_since is not None

    def clears_due(self, now: float) -> bool:
        """A watermark has waited long enough for an MO batch to carry it: it goes alone."""
        return self._marks_since is not None and now - self._marks_since >= MARKS_HOLD_S

    def clears_wakeup(self, now: float) -> float | None:
        """Seconds until `clears_due` (None: no watermark waits)."""
        return max(0.0, self._marks_since + MARKS_HOLD_S - now) if self._marks_since is not None else None

    def _session(self, token: str, now: float) -> _Session:
        """The session batches are now prepared for; a new one ends the one before, whose watermark
        then goes before any script of the new one (in the next round trip's head)."""
        session = self._current
        if session is not None and session.token == token:
            return session
        if session is not None:
            session.ended = now
            if session.mark > session.written:
                self._marks_since = float("-inf")
        session = self._sessions.get(token)
        if session is None:  # no batch numbered so far is its: its watermark starts there
            session = self._sessions[token] = _Session(token, top=self._number, written=self._number)
        self._current = session
        return session

    def _take_marks(self, now: float) -> tuple[list[tuple], list[tuple[_Session, int]]]:
        """The writes of the watermarks that moved, once one has waited `MARKS_HOLD_S`, and the
        deletion of ended sessions' that no guard can need any more (`dispatch.redelivery_guard_seconds`
        after their end): the commands, and what to restore should they fail."""
        if self._marks_since is None or now - self._marks_since < MARKS_HOLD_S:
            return [], []
        self._marks_since = None
        keys = self.store.keys
        by_key: dict[str, list[str]] = {}
        taken: list[tuple[_Session, int]] = []
        written_ms = int(time.time() * 1000)  # when, for the prune of dead sessions' watermarks (lua/marks_prune.lua)
        for session in self._sessions.values():
            mark = session.mark
            if mark > session.written:
                value = mark_value(mark, written_ms)
                taken.append((session, session.written))
                session.written = mark
                for shard in session.shards or (0,):
                    by_key.setdefault(keys.marks(shard), []).extend((session.token, value))
        cmds: list[tuple] = [("HSET", key, *pairs) for key, pairs in by_key.items()]
        forget = self.live.settings.dispatch.redelivery_guard_seconds
        for session in [s for s in self._sessions.values() if s.ended is not None and now - s.ended > forget]:
            del self._sessions[session.token]
            for number in session.open:
                self._batches.pop(number, None)
            cmds.extend(("HDEL", keys.marks(shard), session.token) for shard in session.shards or (0,))
        return cmds, taken

    def _restore_marks(self, taken: list[tuple[_Session, int]]) -> None:
        """Watermark writes that failed: first in the next round trip."""
        for session, before in taken:
            session.written = min(session.written, before)
        if taken:
            self._marks_since = float("-inf")

    # -- scheduling -----------------------------------------------------------------------------------
    @property
    def high_water(self) -> int:
        """Queued parts beyond which no more MOs are dispatched until the SMSC takes replies."""
        return 2 * self.live.settings.smsc.submit_window + 16

    def startable(self) -> bool:
        return (len(self.pending) < MAX_IN_FLIGHT and self.ready()
                and (self._stalled_until == 0.0 or self.clock() >= self._stalled_until))

    def ready(self) -> bool:
        if self.receipts:
            return True
        if self.sender.backlog > self.high_water:
            return False
        if self.deferred:
            return True
        if self.slot_waits:
            now = self.clock()
            return any(w.due <= now for w in self.slot_waits)
        return False

    def retry_wakeup(self, now: float) -> float | None:
        """Seconds until the pipeline next has something to try again, for the transport's select
        timeout (None: nothing): an MO waiting for its slot (`now` on the pipeline's clock), or a
        round trip's pause between tries of a redirected command (`Roundtrip.retry_in`)."""
        due = self._next_due(now)
        waits = [due - now] if due is not None else []
        waits.extend(r for r in (rt.retry_in() for rt in self.roundtrips()) if r is not None)
        return min(waits, default=None)

    def _next_due(self, now: float) -> float | None:
        return min((w.due for w in self.slot_waits if w.due > now), default=None)

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
            if not self._start_batch(out):  # what waits belongs to subscribers in flight, or waits for its slot
                due = self._next_due(self.clock())
                self._stalled_until = float("inf") if due is None else due  # no busy loop
                break
        return out

    def _start_batch(self, out: list[Resp]) -> bool:
        """One Redis round trip for a batch of MOs, receipts, records and cleared guards: sent now,
        answered in `_finish` when Redis replies."""
        started = self.clock()
        cap = BATCH_MAX if self.sender.backlog <= self.high_water else 0
        if not self.pending and len(self.deferred) >= SPLIT_FROM:
            cap = min(cap, (len(self.deferred) + 1) // 2)  # two halves in flight overlap with the SMSC
        retried: list[_SlotWait] = []
        if not self.pending and not self.slot_waits:
            mos, self.deferred = self.deferred[:cap], self.deferred[cap:]
        else:
            busy = {mo.msisdn for p in self.pending for mo, _r in p.mos}
            mos, keep = [], []
            waits: list[_SlotWait] = []
            for w in self.slot_waits:  # first: they came before every MO not yet batched
                msisdn = w.mo[0].msisdn
                if len(mos) < cap and w.due <= started and msisdn not in busy:
                    retried.append(w)
                    mos.append(w.mo)
                else:  # its subscriber's later MOs stay behind it
                    busy.add(msisdn)
                    waits.append(w)
            self.slot_waits = waits
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
        session = self._session(identity.token, started)
        self._number += 1
        number = session.top = self._number
        session.open[number] = -1  # its guards hold until its resps are confirmed
        self._batches[number] = session
        marks: list[tuple[_Session, int]] = []
        try:
            head, marks = self._take_marks(started)
            batch = self.dispatcher.prepare([mo for mo, _r in mos], identity, acks, writes,
                                            self._receipt_commands(receipts), head, number=number, mark=session.mark)
            self.dispatcher.start(batch, give_back_tryagain=True)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            out += self._failed(e, mos, receipts, acks, writes, parts, marks)
            return True
        pending = _Pending(batch, mos, receipts, acks, writes, parts, marks, started, identity, retried)
        self.pending.append(pending)
        if batch.roundtrip is None or batch.roundtrip.done:
            out += self._finish(pending)
        return True

    def record(self) -> bool:
        """A round trip of records alone (nothing else is going to Redis soon): the accepted
        replies it records let further submits out; the watermarks that have waited `MARKS_HOLD_S`.
        False when nothing needed writing."""
        acks, writes, parts = self.sender.take_pending()
        now = self.clock()
        head, marks = self._take_marks(now)
        if not acks and not writes and not head:
            return False
        self._acks_flushed_at = now
        identity = self.sessions.identity
        batch = self.dispatcher.prepare([], identity, acks, writes, head=head)
        self.dispatcher.start(batch)
        pending = _Pending(batch, [], [], acks, writes, parts, marks, self._acks_flushed_at, identity)
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
            self._restore_marks(p.marks)
            self.sessions.suspect()

    def _finish(self, p: _Pending) -> list[Resp]:
        self.pending.remove(p)
        self._stalled_until = 0.0
        try:
            result = self.dispatcher.finish(p.batch)
        except Exception as e:  # never let one batch kill the loop; the SMSC will redeliver
            return self._failed(e, p.mos, p.receipts, p.acks, p.writes, p.parts, p.marks)
        if result.acks_flushed:
            self.sender.recorded(p.acks)
        else:
            self.sender.restore_pending(p.acks, p.writes, p.parts)
            self._restore_marks(p.marks)
            if p.sender == self.sessions.identity:
                self.sessions.new_session()  # the outcome of its MOs is unknown: their guards now hold
            self.sessions.suspect()
        receipt_status = Status.ROK if result.acks_flushed else Status.RX_T_APPN
        out: list[Resp] = []
        for r, reply in p.receipts:
            out.append((reply, receipt_status, None))
            if self.report_receipt is not None and result.acks_flushed:
                self.report_receipt(r)
        number = p.batch.number
        session = self._batches.get(number)
        outcomes = result.outcomes
        if result.acks_flushed and session is not None:  # else the outcome is unknown: its guards may be stored, and hold
            guard = str(number)
            guarded = 0
            back = self._slot_moving(p, outcomes)
            for i, ((_mo, reply), oc) in enumerate(zip(p.mos, outcomes)):
                if i in back:
                    continue  # not answered: it goes again
                if oc.guard and oc.status == Status.ROK:  # a "try again" carries none: the MO comes back
                    guarded += 1
                    out.append((reply, oc.status, guard))
                    if self.store.cluster:
                        session.shards.add(self.store.keys.shard(oc.inbound.msisdn))
                else:
                    out.append((reply, oc.status, None))
            if guarded:
                session.open[number] = guarded
            else:
                self._close(session, number)
            if back:
                outcomes = [oc for i, oc in enumerate(outcomes) if i not in back]
        else:
            out.extend((reply, oc.status, None) for (_mo, reply), oc in zip(p.mos, result.outcomes))
        if self.report_batch is not None and outcomes:
            self.report_batch(outcomes, self.clock() - p.started)
        self.sender.enqueue(result.entries)
        return out

    def _slot_moving(self, p: _Pending, outcomes: list[MoOutcome]) -> set[int]:
        """The MOs of an answered batch whose script Redis did not run, their slot moving: put back
        in front of the MOs not yet batched, due after a pause (their positions in the batch); those that
        waited `SLOT_WAIT_S` since their first try are refused (their outcome's temporary error)."""
        now = self.clock()
        back: list[_SlotWait] = []
        positions: set[int] = set()
        for i, ((mo, reply), oc) in enumerate(zip(p.mos, outcomes)):
            if oc.outcome != SLOT_MIGRATING:
                continue
            wait = p.retried[i] if i < len(p.retried) else _SlotWait((mo, reply), since=p.started)
            if now - wait.since >= SLOT_WAIT_S:
                _log.error("script_failed", correlation=oc.correlation, error="TRYAGAIN: its slot still migrating",
                           waited_s=round(now - wait.since, 2), tries=wait.tries + 1)
                continue
            wait.due = now + SLOT_RETRY_PAUSES[min(wait.tries, len(SLOT_RETRY_PAUSES) - 1)]
            wait.tries += 1
            back.append(wait)
            positions.add(i)
        self.slot_waits[:0] = back
        return positions

    def _failed(self, error: Exception, mos: list[Mo], receipts: list[ReceiptIn], acks: list[tuple[str, str]],
                writes: list[KeyWrite], parts: int, marks: list[tuple[_Session, int]]) -> list[Resp]:
        """A bug in handling a batch: log it, keep the records for later, ask the SMSC to redeliver."""
        _log.exception("dispatch_failed", error=repr(error))
        self.sender.restore_pending(acks, writes, parts)
        self._restore_marks(marks)
        self.sessions.new_session()
        return [(reply, Status.RX_T_APPN, None) for _x, reply in (*mos, *receipts)]

    def refuse_deferred(self) -> list[Resp]:
        """Stopping: MOs not yet batched get a temporary error (the SMSC delivers them again)."""
        deferred, self.deferred = [w.mo for w in self.slot_waits] + self.deferred, []
        self.slot_waits = []
        return [(reply, Status.RX_T_APPN, None) for _mo, reply in deferred]
