"""The simulated SMSC's MO side: MOs injected by handsets and receipts of MTs, as jobs delivered to
the ESME as deliver_sm (or data_sm) over its receiver-capable binds.

`Deliveries.inject_mo` checks and builds an MO (`mo.build_mo_parts`, shaped by the profile:
`profiles.shape_mo`) and queues it; `queue_receipt` queues a receipt (`submits` writes it). The
`scheduler` runs the jobs: a handset's MOs in order, one at a time; each part of a long MO goes to
the next receiver-capable bind in turn, so with several binds the parts of one message can land on
different binds, as with a real SMSC. A job waits for a bind when there is none, and is
redelivered after `redeliver_seconds` on a temporary error, a timeout or a lost link; an MO can
also have its resp "lost" (the link drops as it arrives; the MO is delivered again on the next
bind) or be sent twice (SMSC redelivery). `status` / `wait` report a job (`MoJob.to_dict`).
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from smsbot.messages import CommandId, DataCoding, DeliverSm, Status, Tag

from . import profiles
from .addresses import mo_source
from .errors import SimSmscError
from .events import SimEvents
from .mo import PartsError, build_mo_parts
from .scheduler import Job, Scheduler
from .smpp_conn import SmppConn

log = logging.getLogger("smsbot.simulator")

TEMPORARY_STATUSES = frozenset({Status.RX_T_APPN, Status.RMSGQFUL, Status.RTHROTTLED, Status.RSYSERR})
HISTORY_KEPT = 50  # delivery attempts remembered per MO


@dataclass(eq=False, kw_only=True)
class MoJob(Job):
    """An MO (key: its handset, so a handset's MOs go in order) or a receipt (a key of its own)."""

    msisdn: str
    short_code: str
    carrier: str = "deliver_sm"  # "deliver_sm" | "data_sm"
    duplicate: bool = False
    lost_resp: bool = False  # the resp of the last part is "lost": link dropped, MO redelivered on the next bind
    redeliver: bool = True  # False: after a lost resp the MO counts as delivered, never sent again
    created_at: float = field(default_factory=time.time)
    delivered_at: float | None = None
    system_id: str | None = None  # receipts go to a bind of this system
    history: list[dict[str, Any]] = field(default_factory=list)
    wire: list[str] = field(default_factory=list)  # hex of each part as last written

    def note(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.history.append(entry)
        if len(self.history) > HISTORY_KEPT:
            del self.history[0]
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "carrier": self.carrier,
            "from": self.msisdn,
            "to": self.short_code,
            "state": self.state,
            "parts": len(self.parts),
            "parts_delivered": self.next_part,
            "attempts": self.attempts,
            "redeliveries": self.redeliveries,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "user_message_reference": umr_of(self.parts[0]) if self.parts else None,
            "history": list(self.history[-20:]),
            "wire": list(self.wire),
        }


def umr_of(d: DeliverSm) -> int | None:
    v = d.tlvs.get(Tag.USER_MESSAGE_REFERENCE)
    return int.from_bytes(v, "big") if v else None


class Deliveries:
    def __init__(
        self,
        *,
        receiver: Callable[[str | None], SmppConn | None],
        behaviour: Callable[[], profiles.Behaviour],
        events: SimEvents,
        count: Callable[..., None],
        stopping: threading.Event,
        country_code: str | None,
        response_timeout: float,
        redeliver_seconds: float,
        workers: int,
    ) -> None:
        """`receiver(system_id)`: the next receiver-capable bind (of that system, if given), None
        when there is none. `behaviour()`: the profile in force."""
        self._receiver = receiver
        self._behaviour = behaviour
        self._events = events
        self._count = count
        self._stopping = stopping
        self._country_code = country_code
        self._response_timeout = response_timeout
        self._redeliver_seconds = redeliver_seconds
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._data_sm_count = 0  # single-part MOs counted for data_sm_every
        self._rand = random.Random()
        self._handset_umr: dict[str, int] = {}
        self._handset_ref: dict[str, int] = {}
        self.scheduler = Scheduler(self._deliver, workers=workers, name="simsmsc", after_attempt=events.job_changed)

    def profile_changed(self) -> None:
        """A new profile is in force: its `data_sm_every` counts from the next MO."""
        with self._lock:
            self._data_sm_count = 0

    # ---------------------------------------------------------------- queueing
    def _next_of(self, counters: dict[str, int], msisdn: str) -> int:
        """The next 16-bit number of handset `msisdn` in `counters` (random at first)."""
        with self._lock:
            v = counters.get(msisdn)
            v = self._rand.randrange(0x10000) if v is None else (v + 1) & 0xFFFF
            counters[msisdn] = v
            return v

    def inject_mo(
        self,
        msisdn: str,
        short_code: str,
        text: str,
        *,
        split: str | None = None,
        shuffle: bool = False,
        extra_tlvs: dict[int, bytes] | None = None,
        data_coding: int | None = None,
        duplicate: bool = False,
        carrier: str | None = None,
        naive_split: bool = False,
        lost_resp: bool = False,
        redeliver: bool = True,
    ) -> dict[str, Any]:
        """Queue an MO from handset `msisdn` to `short_code`; returns {"id", "parts",
        "user_message_reference", "carrier", "state"} at once. Delivery happens in the background
        (`status`). The profile shapes the PDUs (`profiles.shape_mo`); `carrier` ("deliver_sm" |
        "data_sm", single-part MOs only) overrides its `data_sm_every`. `naive_split` cuts a long
        text at the part size even inside a UCS-2 surrogate pair or a GSM-7 escape. `lost_resp`:
        the resp of the (last) part is taken as lost with the link: the connection is dropped right
        after it and the MO is delivered again, identical, on the ESME's next bind (the one case
        where an SMSC redelivers what the ESME has already handled); with `redeliver` False the MO
        counts as delivered instead and is never sent again (an SMSC that resets the link before
        reading the resp and forgets the MO)."""
        if self._stopping.is_set():
            raise SimSmscError("simulator stopped")
        if not msisdn or not short_code:
            raise SimSmscError("from and to are required")
        if not isinstance(text, str):
            raise SimSmscError("text must be a string")
        if data_coding is not None and int(data_coding) not in tuple(DataCoding):
            raise SimSmscError(f"unsupported data_coding {data_coding}; use one of {[int(d) for d in DataCoding]}")
        for tag in extra_tlvs or {}:
            if not 0 <= int(tag) <= 0xFFFF:
                raise SimSmscError(f"TLV tag {tag} out of range")
        if carrier is not None and carrier not in profiles.CARRIERS:
            raise SimSmscError(f"carrier must be one of {', '.join(profiles.CARRIERS)}")
        asked_carrier = carrier
        ref = self._next_of(self._handset_ref, msisdn)
        b = self._behaviour()
        try:
            source, source_ton = mo_source(msisdn, b.international_source, self._country_code)
            parts = build_mo_parts(
                source, short_code, text, split=split, ref=ref, umr=self._next_of(self._handset_umr, msisdn),
                source_ton=source_ton, data_coding=None if data_coding is None else int(data_coding),
                extra_tlvs=extra_tlvs, naive_split=naive_split,
            )
        except PartsError as e:
            raise SimSmscError(str(e)) from None
        if carrier == "data_sm" and len(parts) > 1:
            raise SimSmscError("a data_sm MO carries one part: this text needs several")
        with self._lock:
            b = self._behaviour()
            if carrier is None:
                carrier = "deliver_sm"
                if b.data_sm_every and len(parts) == 1:
                    self._data_sm_count += 1
                    if self._data_sm_count % b.data_sm_every == 0:
                        carrier = "data_sm"
        profiles.shape_mo(parts, b, carrier)
        if shuffle and len(parts) > 1:
            original = list(parts)
            while parts == original:
                self._rand.shuffle(parts)
        job = MoJob(id=f"mo{next(self._ids)}", key=msisdn, kind="mo", msisdn=msisdn, short_code=short_code,
                    parts=parts, duplicate=duplicate, carrier=carrier, lost_resp=lost_resp, redeliver=redeliver)
        self._count("mo_injected")
        asked = {"split": split, "shuffle": shuffle, "duplicate": duplicate, "carrier": asked_carrier,
                 "naive_split": naive_split, "lost_resp": lost_resp,
                 "tlvs": {f"0x{int(t):04x}": bytes(v).hex() for t, v in (extra_tlvs or {}).items()}}
        options = {k: v for k, v in asked.items() if v}
        if not redeliver:
            options["redeliver"] = False
        if data_coding is not None:
            options["data_coding"] = int(data_coding)
        self._events.mo_queued(job, text, options)
        self.scheduler.add(job)
        return {"id": job.id, "parts": len(parts), "user_message_reference": umr_of(parts[0]), "carrier": carrier,
                "state": job.state}

    def queue_receipt(self, receipt: DeliverSm, *, message_id: str, handset: str, system_id: str,
                      stat: str, err: str) -> None:
        """Queue `receipt` (of MT `message_id`, to `handset`) for a bind of `system_id`."""
        job_id = f"r{message_id}.{next(self._ids)}"
        job = MoJob(id=job_id, key=f"receipt:{job_id}", kind="receipt", msisdn=handset,
                    short_code=receipt.destination_addr, parts=[receipt], system_id=system_id)
        self._events.receipt_queued(job.id, message_id, handset, stat, err)
        self.scheduler.add(job)

    # ---------------------------------------------------------------- delivering
    def _retry_later(self, job: MoJob, reason: str, status: int | None, waiting_bind: bool = False) -> None:
        redelivery = self.scheduler.retry(job, reason, status, after=self._redeliver_seconds, waiting_link=waiting_bind)
        if redelivery and job.kind == "mo":  # a deliver_sm went out and failed: the next try is a redelivery
            self._count("mo_redelivered")

    def _deliver(self, job: MoJob) -> None:
        """One delivery attempt of `job` (the scheduler's `deliver`): its parts from the next one on."""
        system_id = job.system_id
        while job.next_part < len(job.parts):
            if self._stopping.is_set():
                job.state = "cancelled"
                return
            conn = self._receiver(system_id)
            if conn is None:
                job.note({"t": time.time(), "part": job.next_part + 1, "result": "no bind"})
                self._retry_later(job, "no receiver bind", None, waiting_bind=True)
                return
            part = job.parts[job.next_part]
            job.attempts += 1
            lose = job.lost_resp and job.kind == "mo" and job.next_part == len(job.parts) - 1
            w = conn.send_deliver(part, self._response_timeout, job.carrier, lose=lose)
            while len(job.wire) <= job.next_part:
                job.wire.append("")
            job.wire[job.next_part] = w.raw.hex()
            entry = job.note({"t": time.time(), "part": job.next_part + 1, "conn": conn.id, "seq": part.sequence,
                              "command": job.carrier, "status": w.status})
            if job.kind == "mo":
                self._count("mo_parts_sent")
                if job.carrier == "data_sm":
                    self._count("mo_data_sm_sent")
            if w.status is None:
                entry["result"] = "connection lost" if conn.closed.is_set() or conn.dropping else "timeout"
                self._retry_later(job, entry["result"], None)
                return
            expected = CommandId.DATA_SM_RESP if job.carrier == "data_sm" else CommandId.DELIVER_SM_RESP
            if w.command_id == CommandId.GENERIC_NACK:
                entry["result"] = "generic_nack"
            elif w.command_id != expected:
                entry["result"] = f"wrong resp 0x{w.command_id:08x}"
                job.state, job.last_status, job.last_error = "rejected", w.status, entry["result"]
                if job.kind == "mo":
                    self._count("mo_rejected")
                log.info("simsmsc %s %s answered with command 0x%08x", job.kind, job.id, w.command_id)
                return
            if w.status == Status.ROK and w.command_id == expected:
                if lose:  # the reader dropped the link as the resp arrived
                    job.lost_resp = False  # once
                    entry["result"] = "resp lost: link dropped"
                    if job.redeliver:
                        self._retry_later(job, "resp lost with the link", None)
                        return
                    entry["result"] += ", not redelivered"
                if job.duplicate and job.kind == "mo":
                    # the SMSC "lost" the resp: the identical deliver_sm goes once more
                    w2 = conn.send_deliver(part, self._response_timeout, job.carrier)
                    job.note({"t": time.time(), "part": job.next_part + 1, "conn": conn.id,
                              "seq": part.sequence, "status": w2.status, "result": "duplicate"})
                    self._count("mo_duplicates_sent")
                job.next_part += 1
                continue
            if w.status in TEMPORARY_STATUSES:
                entry["result"] = "temporary error"
                self._retry_later(job, f"temporary error 0x{w.status:x}", w.status)
                return
            entry["result"] = "permanent error"
            job.state, job.last_status, job.last_error = "rejected", w.status, f"permanent error 0x{w.status:x}"
            if job.kind == "mo":
                self._count("mo_rejected")
            log.info("simsmsc %s %s rejected with 0x%x", job.kind, job.id, w.status)
            return
        job.state = "delivered"
        job.last_status = 0
        job.last_error = ""
        job.delivered_at = time.time()
        self._count("mo_delivered" if job.kind == "mo" else "receipts_sent")
