"""Dispatch a batch of MOs: route each, run all their atomic steps in ONE Redis round trip.

Input: the `Inbound` messages of one socket read. Output: a deliver_sm_resp status per MO and the
outbox entries the scripts picked up for sending. The rules:

* short code not configured -> no reply, logged, acknowledged (there is nothing to retry);
* a part of a long MO -> its raw user data stored in Redis until all parts are in; the part that
  completes the message has the joined bytes decoded once (`codec.join_parts`) and run in a
  second round trip (rare path);
* everything else -> `Router.route` -> one EVALSHA of the MO script, which also XADDs the reply
  intent to the outbox (owned by this sender) and returns it, so the reply goes out in this batch;
  each such call carries the MO's redelivery guard (see `smsbot.pipeline` and lua/main.lua);
* Redis unreachable or a script error -> ESME_RX_T_APPN, so the SMSC redelivers later. A status
  of 0 is only ever returned after the script's effects are stored.
* an MO script Redis did not run because its slot is mid-migration (TRYAGAIN: Redis Cluster), in
  a batch started with ``give_back_tryagain`` -> outcome `SLOT_MIGRATING` after a short try,
  ESME_RX_T_APPN, no guard, nothing applied: the caller runs the MO again later
  (`smsbot.pipeline`). For any other caller the round trip follows it for up to 10 s; then it is
  a script error like any other.

Settings and router are read from the bot's `Live` once per batch (`prepare`), so a reload (SIGHUP)
applies every `dispatch.*` key at once, from the next batch on. Whose replies the scripts make them, and which session's guards they
leave, is the `SenderIdentity` each batch is prepared for (`smsbot.delivery` owns it).
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from hashlib import sha1
from typing import Callable, Sequence

import redis

from smsbot import codec, log, msisdn
from smsbot.identity import SenderIdentity
from smsbot.live import Live
from smsbot.messages import Inbound, Status
from smsbot.roundtrip import Roundtrip
from smsbot.router import Router
from smsbot.store import KeyWrite, ScriptCall, ScriptResult, Store

_log = log.get("smsbot.dispatch")
SLOT_MIGRATING = "slot_migrating"  # the outcome of an MO whose script Redis did not run: TRYAGAIN, its slot moving


@dataclass(slots=True)
class MoOutcome:
    inbound: Inbound
    correlation: str
    status: Status = Status.ROK
    command: str = ""
    outcome: str = ""
    guard: str = ""  # names the MO's redelivery guard ('' = none): its resp is to be confirmed (`smsbot.pipeline`)
    copies: int = 0  # a suspected redelivery: replies sent again because the first ones went out


@dataclass(slots=True)
class BatchResult:
    outcomes: list[MoOutcome]
    entries: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    acks_flushed: bool = False


_CORRELATION_PREFIX = os.urandom(3).hex()
_correlation_counter = itertools.count(1)


def _correlation() -> str:
    """Unique per MO across instances: a random per-process prefix and a counter."""
    return f"{_CORRELATION_PREFIX}{next(_correlation_counter):x}"


@dataclass(slots=True)
class PreparedBatch:
    """A batch between `prepare` and `finish`: its calls, and the round trip once started."""

    now_ms: int
    sender: SenderIdentity
    acks: list[tuple[str, str]]
    writes: list[KeyWrite]
    tail: list[tuple]  # commands after the records (receipts)
    head: list[tuple] = field(default_factory=list)  # commands before the scripts (session watermarks)
    number: int = 1  # the batch's number in its session's count: its MOs' guards carry it
    mark: int = 0  # the session's watermark when prepared: its guards up to that number are confirmed
    outcomes: list[MoOutcome] = field(default_factory=list)
    calls: list[ScriptCall] = field(default_factory=list)
    owners: list[tuple[MoOutcome, str]] = field(default_factory=list)  # per call; kind "mo" | "part"
    roundtrip: Roundtrip | None = None
    give_back_tryagain: bool = False  # its caller runs a SLOT_MIGRATING MO again (`Dispatcher.start`)
    raw: list = field(default_factory=list)
    error: Exception | None = None
    # what was in force when it was prepared (`Live.now`), read once per batch: its MOs are routed
    # and guarded alike, a reload between two MOs of it changes neither
    router: Router | None = None
    guard_ms: int = 0  # dispatch.redelivery_guard_seconds, in ms (0: no guards)


class Dispatcher:
    def __init__(self, live: Live, store: Store, clock: Callable[[], float] = time.time):
        self.live = live
        self.store = store
        self.clock = clock
        # one line when Redis becomes unreachable, then at most one a minute, and one when it is back
        self._unreachable = log.Throttled(_log, "redis_unreachable", 60.0, recovered_event="redis_reachable_again")

    def handle(self, inbounds: Sequence[Inbound], sender: SenderIdentity, acks: Sequence[tuple[str, str]] = (),
               writes: Sequence[KeyWrite] = (), number: int = 1, mark: int = 0) -> BatchResult:
        """Route, store and answer a batch synchronously (prepare + start + wait + finish)."""
        batch = self.prepare(inbounds, sender, acks, writes, number=number, mark=mark)
        self.start(batch)
        if batch.roundtrip is not None:
            try:
                batch.raw = batch.roundtrip.wait()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                batch.error = e
        return self.finish(batch)

    def prepare(self, inbounds: Sequence[Inbound], sender: SenderIdentity, acks: Sequence[tuple[str, str]] = (),
                writes: Sequence[KeyWrite] = (), tail: Sequence[tuple] = (), head: Sequence[tuple] = (),
                number: int = 1, mark: int = 0) -> PreparedBatch:
        """Route every MO of the batch and build its script call for `sender` (pure Python, no I/O);
        its guards carry batch `number`, and the session's watermark `mark` (`smsbot.pipeline`)."""
        now_ms = int(self.clock() * 1000)
        now = self.live.now
        settings, router = now.settings, now.router
        batch = PreparedBatch(now_ms=now_ms, sender=sender, acks=list(acks), writes=list(writes), tail=list(tail),
                              head=list(head), number=number, mark=mark, router=router,
                              guard_ms=settings.dispatch.redelivery_guard_seconds * 1000)
        country_code, serves, canonical = settings.subscribers.country_code, router.serves, msisdn.canonical_inbound
        outcomes, calls, owners = batch.outcomes, batch.calls, batch.owners
        for mo in inbounds:
            mo = canonical(mo, country_code)  # +86/86… -> one subscriber key
            oc = MoOutcome(mo, _correlation())
            outcomes.append(oc)
            if not serves(mo.short_code):
                oc.command, oc.outcome = "-", "unknown_short_code"
                continue
            if mo.segment is None:
                calls.append(self._intent_call(oc, mo, mo.text, batch))
                owners.append((oc, "mo"))
            else:
                seg = mo.segment
                ref = f"{seg.ref}:{seg.total}"
                calls.append(
                    self.store.mo_call(
                        "part", mo.msisdn, mo.short_code, correlation=oc.correlation, now_ms=now_ms,
                        args={"seq": seg.seq, "total": seg.total, "hex": mo.payload.hex(),
                              "timeout_ms": settings.dispatch.reassembly_timeout_seconds * 1000},
                        parts_key=self.store.keys.parts(mo.msisdn, mo.short_code, ref),
                    )
                )
                owners.append((oc, "part"))
                oc.command = "reassembly"
        return batch

    def start(self, batch: PreparedBatch, give_back_tryagain: bool = False) -> None:
        """Send the batch's one round trip (script calls + acks + records); nothing to send: no-op.
        `give_back_tryagain`: the caller runs a `SLOT_MIGRATING` MO again later, so its TRYAGAIN
        comes back after a short try instead of holding the round trip for up to 10 s."""
        if not batch.calls and not batch.acks and not batch.writes and not batch.tail and not batch.head:
            return
        batch.give_back_tryagain = give_back_tryagain
        try:
            batch.roundtrip = self.store.begin_batch(batch.calls, batch.acks, batch.writes, batch.tail, batch.head,
                                                     give_back_tryagain=give_back_tryagain)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            batch.error = e

    def finish(self, batch: PreparedBatch) -> BatchResult:
        """Turn the replies into statuses and outbox entries (the rare long-MO step runs here, synchronously)."""
        result = BatchResult(batch.outcomes)
        if batch.error is not None:
            self._unreachable.hit(error=str(batch.error), batch=len(batch.outcomes))
            for oc in batch.outcomes:
                if oc.outcome != "unknown_short_code":
                    oc.status, oc.outcome = Status.RX_T_APPN, "redis_unreachable"
            return result
        if batch.roundtrip is None:
            return result
        try:
            results = self.store.finish_batch(batch.calls, batch.raw, batch.roundtrip.cmds, len(batch.head))
        except (redis.RedisError, OSError) as e:
            _log.error("redis_batch_failed", error=str(e), batch=len(batch.outcomes))
            for oc in batch.outcomes:
                if oc.outcome != "unknown_short_code":
                    oc.status, oc.outcome = Status.RX_T_APPN, "redis_error"
            return result
        self._unreachable.recovered()
        result.acks_flushed = True
        completed: list[tuple[MoOutcome, str]] = []
        apply, give_back = self._apply, batch.give_back_tryagain
        for (oc, kind), res in zip(batch.owners, results):
            apply(oc, res, result, give_back)
            if kind == "part" and isinstance(res, ScriptResult) and res.outcome == "part_complete" and res.extra is not None:
                completed.append((oc, res.extra))
        if completed:
            self._run_completed(completed, batch, result)
        return result

    def _intent_call(self, oc: MoOutcome, mo: Inbound, text: str, batch: PreparedBatch, parts_key: str = "") -> ScriptCall:
        router = batch.router
        assert router is not None  # set by `prepare`
        short_code, now_ms, guard_ms = mo.short_code, batch.now_ms, batch.guard_ms
        intent = router.route(short_code, text, now_ms)
        oc.command = intent.command
        fp = None
        if guard_ms:
            # what identifies an SMSC's redelivery of this MO: the same sender, short code, message
            # reference, concatenation reference and text (the guard only matters across sessions)
            seg = f"{mo.segment.ref}/{mo.segment.total}" if mo.segment else ""
            umr = "" if mo.user_message_reference is None else mo.user_message_reference
            fp = sha1(f"{short_code}|{umr}|{seg}|{text}".encode("utf-8", "surrogatepass")).hexdigest()[:20]
        call = self.store.mo_call(
            intent.handler, mo.msisdn, short_code,
            lang=router.language(short_code), correlation=oc.correlation, args=intent.args,
            guard_fp=fp, guard_ms=guard_ms, batch=batch.number, mark=batch.mark, sender=batch.sender,
            reply_to=mo.reply_to, now_ms=now_ms,
            parts_key=parts_key, delete_parts=bool(parts_key), extra_keys=intent.keys,
        )
        if fp:
            oc.guard = call.keys.old_guard  # the MO's guard by name: its subscriber and fingerprint
        return call

    def _apply(self, oc: MoOutcome, res: ScriptResult | Exception, result: BatchResult,
               give_back_tryagain: bool = False) -> None:
        """One script's reply into its MO's outcome and the batch's outbox entries.
        `give_back_tryagain`: a TRYAGAIN is `SLOT_MIGRATING` (the caller runs the MO again, and
        logs it if it gives up); else, as every other error, a script that failed."""
        if give_back_tryagain and isinstance(res, Exception) and str(res).startswith("TRYAGAIN"):
            oc.status, oc.outcome, oc.guard = Status.RX_T_APPN, SLOT_MIGRATING, ""  # Redis ran nothing for it
            return
        if isinstance(res, Exception):
            _log.error("script_failed", correlation=oc.correlation, error=str(res))
            oc.status, oc.outcome, oc.guard = Status.RX_T_APPN, "script_error", ""
            return
        oc.outcome = res.outcome
        if res.outcome == "redelivered" and res.extra:
            oc.copies = int(res.extra)
        result.entries.extend(res.entries)

    def _run_completed(self, completed: list[tuple[MoOutcome, str]], batch: PreparedBatch, result: BatchResult) -> None:
        calls = []
        for oc, text in completed:
            mo = oc.inbound
            seg = mo.segment
            assert seg is not None
            key = self.store.keys.parts(mo.msisdn, mo.short_code, f"{seg.ref}:{seg.total}")
            calls.append(self._intent_call(oc, mo, codec.join_parts(mo.data_coding, [bytes.fromhex(text)]), batch,
                                           parts_key=key))
        try:
            results = self.store.run_batch(calls)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            self._unreachable.hit(error=str(e), batch=len(calls))
            for oc, _ in completed:
                oc.status, oc.outcome = Status.RX_T_APPN, "redis_unreachable"
            return
        for (oc, _), res in zip(completed, results):
            self._apply(oc, res, result)

