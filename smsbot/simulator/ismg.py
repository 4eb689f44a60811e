"""SimIsmg: a simulated China Mobile SMS gateway (ISMG) speaking CMPP 3.0 and 2.0, for testing smsbot.

What it does, like an ISMG (`smsbot.simulator.smsc.SimSmsc` is its SMPP sibling):
- authenticates each CONNECT: Source_Addr must be its SP_Id (else Status 2), AuthenticatorSource
  must be MD5 of it, the shared secret and the Timestamp (else 3), the Version at most the one it
  speaks (`version`; else 4), the body readable (else 1). It answers with the version asked for
  (0x30 and up: 3.0, below: 2.0) and AuthenticatorISMG; a refusal carries 16 zero octets and
  closes the connection;
- answers ACTIVE_TEST and TERMINATE, and sends its own ACTIVE_TEST on an idle connection
  (`ismg_conn`);
- takes SUBMITs: a SUBMIT_RESP with a Msg_Id of its own (`smsbot.cmpp.msgid`: the time from
  `clock`, its `gateway_code`, a sequence), or Result 5 for a fee `Fee.problem` refuses, 11 for a
  Msg_src other than its SP_Id, 13 with no destination, 1 for an unreadable body. Accepted parts
  are joined by their UDH into whole messages and kept per MSISDN in a `Mailbox` until a handset
  takes them: the SMPP simulator's when one is given (`SimIsmg(mailbox=sim.mailbox)`, so the same
  handsets read both; `StoredMessage.data_coding` then holds the Msg_Fmt), else its own.
  `submit_log()` keeps what each SUBMIT asked for (fee fields, Service_Id, LinkID, Msg_Fmt, parts);
- sends a status report (a DELIVER with Registered_Delivery 1) to each destination of a SUBMIT
  that asked for one: Stat DELIVRD unless the profile's ``receipt_outcomes`` (`report_stats`) names another for that handset;
- delivers MOs injected with `inject_mo` as DELIVERs: Msg_Fmt 0 for ASCII, 8 for other text, 15
  (GBK) on request, long ones split behind a UDH (`smsbot.cmpp.text`); each part has its own
  Msg_Id and, on a 3.0 connection, a LinkID;
- redelivers a DELIVER that is not answered within `response_timeout`, or answered with Result
  8 (flow control) or above, after `redeliver_seconds`, with the same Msg_Id; Results 1-7 reject it;
- misbehaves on request (`set_faults`: the SMPP simulator's `faults` plan, its statuses CMPP
  Results, throttling with Result 8 by default): delayed SUBMIT_RESPs, throttling, refusals per
  destination, a connection dropped with a SUBMIT unanswered or right after its resp; sends a
  partial PDU and falls silent (`send_partial`);
- behaves like a tidy gateway (profile ``default``) or like ISMGs in the field (``field``:
  space-padded fields, GBK MOs, reused Msg_Ids, MOs from ``86…``), flag by flag (`set_profile`,
  `cmpp_profile`);
- feeds the testers' page (`events`, as the SMPP simulator does) and, with `control`, serves the
  same control API and web page (`control.ControlServer`): handsets send MOs and read MTs over
  CMPP.

This module owns what is CMPP's: CONNECT judged, SUBMITs judged, answered and stored, Msg_Ids,
status reports, MOs as DELIVERs and their delivery, and the CMPP profile (`cmpp_profile`). The
lifecycle, the profile switching, the fault plan, the counters and the connections held are
`base.Simulator`'s, shared with the SMPP sibling. Threads: one accept thread (`server.Listener`),
one reader per connection (`ismg_conn`), `workers` delivery workers (the SMPP simulator's
`scheduler`: a handset's MOs go in order, one at a time; each status report on its own), the
thread of delayed resps (`faults.Delayer`) and, with `control`, the HTTP control server's.
`stop()` ends and joins them all.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Callable

from smsbot import cmpp
from smsbot.cmpp import auth, msgid, text
from smsbot.cmpp.constants import DELIVERED, ConnectStatus, Result, Version
from smsbot.msisdn import DEFAULT_COUNTRY_CODE, subscriber_key

from . import cmpp_profile
from .base import Simulator
from .errors import SimSmscError
from .faults import Faults, Verdict
from .ismg_conn import IsmgConn
from .mailbox import Mailbox, StoredMessage
from .scheduler import Job, Scheduler

log = logging.getLogger("smsbot.simulator")
SUBMITS_KEPT = 10000


class SimIsmgError(SimSmscError):
    """Bad input to the simulator's API (the control API answers it with 400)."""


@dataclass(eq=False)
class IsmgJob(Job):
    """An MO (key: its handset) or a status report (a key of its own): DELIVERs; `last_status` is
    the last DELIVER_RESP's Result. `msisdn`, `short_code`, `carrier` and `created_at` are what the
    page's conversation shows of an MO."""

    msisdn: str = ""
    short_code: str = ""
    carrier: str = "deliver"
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "parts": len(self.parts),
                "parts_delivered": self.next_part, "attempts": self.attempts, "redeliveries": self.redeliveries,
                "last_result": self.last_status, "last_error": self.last_error,
                "msg_ids": [msgid.text(p.msg_id) for p in self.parts]}


class SimIsmg(Simulator):
    """The simulated ISMG. `start()` / `stop()` (or `with`), `serve_forever()` for the CLI; the
    port is `port` after `start()`, the control API's `control_port` / `control_url`."""

    name = "simismg"
    protocol = "cmpp"
    error = SimIsmgError
    mo_final_states = ("delivered", "rejected", "cancelled")
    make_behaviour = staticmethod(cmpp_profile.make_behaviour)
    partial_pdu = staticmethod(cmpp_profile.partial_pdu)

    def __init__(
        self,
        sp_id: str,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: int = Version.V30,
        mailbox: Mailbox | None = None,
        gateway_code: int = 0x01234,
        response_timeout: float = 5.0,
        active_test_interval: float = 30.0,
        redeliver_seconds: float = 1.0,
        workers: int = 2,
        send_reports: bool = True,
        report_stats: dict[str, str] | None = None,
        international_source: bool = False,
        country_code: str | None = DEFAULT_COUNTRY_CODE,
        clock: Callable[[], datetime] = datetime.now,
        profile: str = "default",
        flags: dict[str, Any] | None = None,
        control: bool = False,
        control_port: int = 0,
        short_codes: list[str] | None = None,
        timezone: str = "Asia/Shanghai",
    ):
        """`version`: the highest the gateway speaks (0x20: a 2.0-only gateway). `report_stats`:
        handset → the Stat of its status reports (the profile flag ``receipt_outcomes``).
        `international_source`: MOs come from ``86…`` (the country code in front) instead of
        the national number (the profile flag of that name). `clock` gives the time in Msg_Ids
        and status reports. `profile` (``default`` | ``field``) and `flags` on top: see
        `cmpp_profile`. `control`: serve the control API and web page on `control_port`
        (`short_codes` and `timezone` are what the page offers and shows times in)."""
        base = {"international_source": international_source, "receipt_outcomes": dict(report_stats or {})}
        super().__init__(
            host=host, wire_port=port, control=control, control_port=control_port,
            response_timeout=response_timeout, country_code=country_code, profile=profile,
            flags={**base, **(flags or {})}, faults=Faults(throttle_status=Result.FLOW_CONTROL, status_max=0xFF),
            mailbox=mailbox, short_codes=short_codes or [], timezone=timezone,
        )
        self.sp_id = sp_id
        self.secret = secret
        self.version = version
        self.gateway_code = gateway_code
        self.active_test_interval = active_test_interval
        self.redeliver_seconds = redeliver_seconds
        self.workers = max(1, workers)
        self.send_reports = send_reports
        self.clock = clock
        self._started_at = clock()  # the time of cycled Msg_Ids (`msg_id_cycle`)
        self._mt_seq = itertools.count(1)
        self._submit_log: list[dict[str, Any]] = []
        self._msg_seq = itertools.count(1)
        self._link_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._report_seq = itertools.count(1)
        self._refs: dict[str, int] = {}
        self._scheduler = Scheduler(self._deliver, workers=workers, name="simismg", after_attempt=self.events.job_changed)

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> SimIsmg:
        """The gateway a bot configured with `settings` (`smsbot.config.Settings`) connects to: its
        SP_Id and secret (`smsc.cmpp`), 2.0 for ``smsc.protocol: cmpp2``, the simulator's host,
        control port, redelivery pause, receipts and profile, the bot's short codes and zone."""
        sim, smsc = settings.simulator, settings.smsc
        kw.setdefault("version", Version.V20 if str(getattr(smsc.protocol, "value", smsc.protocol)) == "cmpp2"
                      else Version.V30)
        kw.setdefault("host", sim.host)
        kw.setdefault("control_port", sim.control_port)
        kw.setdefault("response_timeout", smsc.response_timeout)
        kw.setdefault("redeliver_seconds", sim.redeliver_seconds)
        kw.setdefault("send_reports", sim.send_receipts)
        kw.setdefault("profile", sim.profile or "default")
        kw.setdefault("country_code", settings.subscribers.country_code)
        kw.setdefault("short_codes", [sc.code for sc in settings.short_codes])
        kw.setdefault("timezone", settings.billing.timezone)
        return cls(smsc.cmpp.sp_id, smsc.cmpp.secret, **kw)

    @property
    def send_receipts(self) -> bool:
        """Status reports are sent when asked (the control API's name for `send_reports`)."""
        return self.send_reports

    @property
    def report_stats(self) -> dict[str, str]:
        """Handset → the Stat of its status reports (the profile's ``receipt_outcomes``, live)."""
        return self.behaviour.receipt_outcomes

    @property
    def port(self) -> int:
        """The CMPP port (the control API names it ``cmpp_port``)."""
        return self.wire_port

    def _listening_on(self) -> str:
        return (f"cmpp {self.host}:{self.port} (SP {self.sp_id}, up to CMPP "
                f"{self.version >> 4:x}.{self.version & 15:x})")

    # ---------------------------------------------------------------- actions
    def send_partial(self, announced: int = 200, octets: int = 40) -> dict[str, Any]:
        """On a connection: a DELIVER header announcing `announced` octets, `octets` of body, then
        silence there (`Connection.wedge`) until the SP closes it; MOs wait for its next
        connection. Returns {"conn", "sequence", "announced", "octets"}."""
        return self._send_partial(self._conns.pick(self._is_bound), "no CMPP connection", announced, octets)

    def restart_message_ids(self) -> None:
        """SUBMIT_RESP Msg_Ids start again from the first sequence (as after a gateway restart)."""
        with self._lock:
            self._msg_seq = itertools.count(1)
            self._mt_seq = itertools.count(1)

    def inject_raw(self, data: bytes, **_: Any) -> dict[str, Any]:
        raise SimIsmgError("POST /raw writes SMPP PDUs; the simulated ISMG has no raw CMPP yet")

    # ---------------------------------------------------------------- connections
    def _accepted(self, sock: socket.socket, addr: Any) -> bool:
        return self._conns.add(IsmgConn(self, sock, addr, self._stopping))

    def judge_connect(self, c: cmpp.Connect) -> tuple[int, int]:
        """(Status, the version to answer with) for a CONNECT."""
        answer = Version.V30 if c.version >= Version.V30 else Version.V20
        if c.source_addr != self.sp_id:
            return ConnectStatus.BAD_SOURCE_ADDR, min(answer, self.version)
        if not auth.source_ok(c.source_addr, self.secret, c.timestamp, c.authenticator):
            return ConnectStatus.AUTH_FAILED, min(answer, self.version)
        if c.version > self.version:
            return ConnectStatus.VERSION_TOO_HIGH, self.version
        return ConnectStatus.OK, answer

    def on_connected(self, conn: IsmgConn) -> None:
        self.count("connects")
        self.events.bind("opened", self._bind_info(conn), self.binds())
        self._scheduler.wake_parked()  # jobs parked for want of a connection go now

    def conn_closed(self, conn: IsmgConn) -> None:
        log.info("simismg conn %s closed", conn.id)
        if conn.version:
            self.events.bind("closed", self._bind_info(conn), self.binds())

    def connections(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "version": c.version, "peer": f"{c.addr[0]}:{c.addr[1]}"}
                for c in self._conns.open(self._is_bound)]

    @staticmethod
    def _is_bound(c: IsmgConn) -> bool:
        return c.connected

    def _bind_info(self, c: IsmgConn) -> dict[str, Any]:
        return {"id": c.id, "mode": f"CMPP {c.version >> 4}.{c.version & 15}", "system_id": self.sp_id,
                "peer": f"{c.addr[0]}:{c.addr[1]}"}

    def active_test(self) -> list[int]:
        """Send an ACTIVE_TEST on every connection now; the sequences sent."""
        return [seq for c in self._conns.open(self._is_bound) if (seq := c.active_test()) is not None]

    def _gauges(self) -> dict[str, int]:
        return {"binds": len(self.binds()), **super()._gauges()}

    # ---------------------------------------------------------------- MT side
    def _new_msg_id(self) -> int:
        return cmpp.MsgId.at(self.clock(), self.gateway_code, next(self._msg_seq)).pack()

    def _new_mt_msg_id(self) -> int:
        """A SUBMIT_RESP's Msg_Id; with the profile's `msg_id_cycle`, ids repeat after that many."""
        cycle = self.behaviour.msg_id_cycle
        if not cycle:
            return self._new_msg_id()
        with self._lock:
            n = next(self._mt_seq)
        return cmpp.MsgId.at(self._started_at, self.gateway_code, (n - 1) % cycle + 1).pack()

    def _judge_submit(self, s: cmpp.Submit) -> tuple[int, str]:
        problem = s.fee.problem()
        if problem:
            return Result.BAD_FEE_CODE, problem
        if s.msg_src != self.sp_id:
            return Result.BAD_MSG_SRC, f"Msg_src {s.msg_src!r} is not the SP's {self.sp_id!r}"
        if not s.dest_terminal_ids:
            return Result.BAD_DEST_TERMINAL_ID, "no Dest_terminal_Id"
        return Result.OK, ""

    def on_submit(self, conn: IsmgConn, sequence: int, s: cmpp.Submit) -> None:
        """A SUBMIT from `conn`'s reader: judged (the SUBMIT, then the fault plan), answered now or
        later (``resp_delay_ms``); an accepted one is stored only as its resp is written."""
        self.count("submits_received")
        result, why = self._judge_submit(s)
        handsets = [subscriber_key(d, self.country_code) for d in s.dest_terminal_ids]
        now = time.monotonic()
        v = self.faults.judge(conn.id, handsets[0] if handsets else "", now)
        if result == Result.OK and v.status:
            result, why = v.status, f"fault plan (submit {v.n})"
        entry = {"t": time.time(), "n": v.n, "conn": conn.id, "seq": sequence, "version": conn.version,
                 "result": result, "status": result, "error": why, "msg_id": "", "to": handsets,
                 "dest_terminal_ids": list(s.dest_terminal_ids),
                 "src_id": s.src_id, "msg_src": s.msg_src, "service_id": s.service_id,
                 "fee_type": s.fee.fee_type, "fee_code": s.fee.fee_code, "fee_user_type": s.fee.user_type,
                 "fee_terminal_id": s.fee.terminal_id, "registered_delivery": s.registered_delivery,
                 "msg_fmt": s.msg_fmt, "pk_total": s.pk_total, "pk_number": s.pk_number, "tp_udhi": s.tp_udhi,
                 "link_id": s.link_id}
        with self._lock:
            self._submit_log.append(entry)
            del self._submit_log[:-SUBMITS_KEPT]
        if v.drop_before:
            self._unanswered(entry)
            conn.drop(f"drop_after_submit={v.n}")
            return
        if v.delay > 0:
            self._delayer.call_at(now + v.delay, partial(self._answer, conn, sequence, s, handsets, v, entry))
        else:
            self._answer(conn, sequence, s, handsets, v, entry)

    def _unanswered(self, entry: dict[str, Any]) -> None:
        entry["result"] = entry["status"] = None
        self.count("submits_dropped")
        self.events.submit(entry)

    def _answer(self, conn: IsmgConn, sequence: int, s: cmpp.Submit, handsets: list[str], v: Verdict,
                entry: dict[str, Any]) -> None:
        result = entry["result"]
        if result != Result.OK:
            counter = "submits_throttled" if result == Result.FLOW_CONTROL else "submits_rejected"
            log.info("simismg conn %s SUBMIT refused with Result %s: %s", conn.id, result, entry["error"])
            answered = conn.send(cmpp.SubmitResp(0, result), sequence, commit=partial(self.count, counter))
        else:
            mid = self._new_mt_msg_id()
            entry["msg_id"] = msgid.text(mid)
            answered = conn.send(cmpp.SubmitResp(mid, Result.OK), sequence,
                                 commit=partial(self._accept, s, handsets, mid))
            if answered is not None and s.registered_delivery == 1 and self.send_reports:
                for dest, handset in zip(s.dest_terminal_ids, handsets):
                    self._queue_report(s, dest, handset, mid)
        if answered is None:  # the connection went first: never answered, nothing stored, the SP resends
            self._unanswered(entry)
        elif result != Result.OK:
            self.events.submit(entry)
        if v.drop_after:
            conn.drop(f"drop_after_resp={v.n}")

    def _accept(self, s: cmpp.Submit, handsets: list[str], mid: int) -> None:
        for handset in handsets:
            self._accept_part(s, handset, mid)

    def _accept_part(self, s: cmpp.Submit, handset: str, mid: int) -> None:
        self.count("mt_parts_received")
        payload, segment = text.split_content(s.tp_udhi, s.msg_content)
        receipt_asked = s.registered_delivery == 1
        if segment is not None:
            joined = self.reassembler.add(s.src_id, handset, segment.ref, segment.total, segment.seq, s.msg_fmt,
                                          payload, msgid.text(mid))
            if joined is not None:
                self._store(s.src_id, handset, *joined, receipt_asked=receipt_asked)
        else:
            self._store(s.src_id, handset, payload, s.msg_fmt, [msgid.text(mid)], receipt_asked=receipt_asked)

    def _store(self, source: str, handset: str, data: bytes, msg_fmt: int, ids: list[str], *,
               receipt_asked: bool) -> None:
        msg = StoredMessage(id=ids[0], sender=source, to=handset, text=text.decode_text(msg_fmt, data),
                            parts=len(ids), data_coding=msg_fmt, received_at=time.time(), message_ids=ids)
        self.count("mt_received")
        self.events.mt_stored(msg, receipt_asked)
        self.mailbox.put(msg)

    def submit_log(self) -> list[dict[str, Any]]:
        """What each SUBMIT asked for (latest SUBMITS_KEPT) and the Result it got."""
        with self._lock:
            return [dict(e) for e in self._submit_log]

    def _queue_report(self, s: cmpp.Submit, dest: str, handset: str, mid: int) -> None:
        now = self.clock().strftime("%y%m%d%H%M")
        stat = cmpp_profile.stat_of(self.behaviour.receipt_outcomes.get(handset, DELIVERED))
        report = cmpp.StatusReport(mid, stat, now, now, dest, next(self._report_seq) & 0xFFFFFFFF)
        d = cmpp.Deliver(msg_id=self._new_msg_id(), dest_id=s.src_id, src_terminal_id=dest, service_id=s.service_id,
                         report=report)
        job_id = f"r{next(self._job_ids)}"
        self.events.receipt_queued(job_id, msgid.text(mid), handset, stat, "")
        self._scheduler.add(IsmgJob(job_id, job_id, "report", [d], msisdn=handset, short_code=s.src_id))

    # ---------------------------------------------------------------- MO side
    def inject_mo(self, msisdn: str, short_code: str, message: str, *, msg_fmt: int | None = None,
                  service_id: str = "") -> dict[str, Any]:
        """Queue an MO from handset `msisdn` to `short_code`; returns {"id", "parts", "msg_fmt",
        "state"} at once (its delivery: `mo_status`, `wait_mo`). `msg_fmt` 0, 8 or 15 (default:
        the profile's ``mo_msg_fmt``, else 0 for ASCII and 8 for other text)."""
        if self._stopping.is_set():
            raise SimIsmgError("simulator stopped")
        if not msisdn or not short_code:
            raise SimIsmgError("from and to are required")
        with self._lock:
            ref = self._refs[msisdn] = (self._refs.get(msisdn, -1) + 1) & 0xFF
        asked = msg_fmt
        if msg_fmt is None:
            msg_fmt = self.behaviour.mo_msg_fmt
        try:
            parts = text.split_text(message, msg_fmt, ref)
        except ValueError as e:
            raise SimIsmgError(str(e)) from None
        source = msisdn
        if self.behaviour.international_source and self.country_code and subscriber_key(msisdn, self.country_code) == msisdn:
            source = self.country_code + msisdn
        delivers = [cmpp.Deliver(msg_id=self._new_msg_id(), dest_id=short_code, src_terminal_id=source,
                                 msg_content=c, msg_fmt=parts.msg_fmt, service_id=service_id, tp_udhi=parts.tp_udhi,
                                 link_id=f"{next(self._link_ids):020d}")
                    for c in parts.contents]
        job = IsmgJob(f"mo{next(self._job_ids)}", msisdn, "mo", delivers, msisdn=msisdn, short_code=short_code)
        self.count("mo_injected")
        self.events.mo_queued(job, message, {} if asked is None else {"msg_fmt": asked})
        self._scheduler.add(job)
        return {"id": job.id, "parts": len(delivers), "msg_fmt": parts.msg_fmt, "state": job.state}

    def jobs(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._scheduler.jobs(kind)

    # ---------------------------------------------------------------- delivery
    def _later(self, job: IsmgJob, reason: str, result: int | None, waiting_conn: bool = False) -> None:
        if self._scheduler.retry(job, reason, result, after=self.redeliver_seconds, waiting_link=waiting_conn):
            self.count("redeliveries")

    def _deliver(self, job: IsmgJob) -> None:
        """One delivery attempt of `job` (the scheduler's `deliver`): its parts from the next one on."""
        while job.next_part < len(job.parts):
            if self._stopping.is_set():
                job.state = "cancelled"
                return
            conn = self._conns.pick(self._is_bound)
            if conn is None:
                self._later(job, "no connection", None, waiting_conn=True)
                return
            d = job.parts[job.next_part]
            if conn.version < Version.V30:  # 2.0 has no LinkID nor terminal types
                d = dataclasses.replace(d, link_id="", src_terminal_type=0)
            job.attempts += 1
            w = conn.send_deliver(d, self.response_timeout, space_padded=self.behaviour.padding == "space")
            self.count("delivers_sent")
            resp = w.pdu
            if resp is None:
                self._later(job, "connection lost" if conn.closed.is_set() else "no DELIVER_RESP", None)
                return
            if not isinstance(resp, cmpp.DeliverResp):
                job.state, job.last_error = "rejected", f"answered with {type(resp).__name__}"
                return
            if resp.msg_id != d.msg_id:
                self.count("deliver_resp_msg_id_mismatch")
            if resp.result == Result.OK:
                job.next_part += 1
                continue
            if resp.result >= Result.FLOW_CONTROL:  # flow control or "another error": try again
                self._later(job, f"Result {resp.result}", resp.result)
                return
            job.state, job.last_status, job.last_error = "rejected", resp.result, f"Result {resp.result}"
            self.count("delivers_rejected")
            return
        job.state, job.last_status, job.last_error = "delivered", 0, ""
        self.count("mo_delivered" if job.kind == "mo" else "reports_delivered")
