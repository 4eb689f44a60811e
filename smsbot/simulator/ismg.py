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
  that asked for one: Stat DELIVRD unless `report_stats` names another for that handset;
- delivers MOs injected with `inject_mo` as DELIVERs: Msg_Fmt 0 for ASCII, 8 for other text, 15
  (GBK) on request, long ones split behind a UDH (`smsbot.cmpp.text`); each part has its own
  Msg_Id and, on a 3.0 connection, a LinkID;
- redelivers a DELIVER that is not answered within `response_timeout`, or answered with Result
  8 (flow control) or above, after `redeliver_seconds`, with the same Msg_Id; Results 1-7 reject it.

Threads: one accept thread (`server.Listener`), one reader per connection (`ismg_conn`), `workers`
delivery workers (the SMPP simulator's `scheduler`: a handset's MOs go in order, one at a time;
each status report on its own). `stop()` ends and joins them all.
The fault modes, the field profile and the web page of the SMPP simulator do not exist here yet.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Callable

from smsbot import cmpp
from smsbot.cmpp import auth, msgid, text
from smsbot.cmpp.constants import DELIVERED, ConnectStatus, Result, Version
from smsbot.msisdn import DEFAULT_COUNTRY_CODE, subscriber_key

from .counters import Counters
from .ismg_conn import IsmgConn
from .mailbox import Mailbox, Reassembler, StoredMessage
from .scheduler import Job, Scheduler
from .server import Connections, Listener

log = logging.getLogger("smsbot.simulator")
SUBMITS_KEPT = 10000


class SimIsmgError(ValueError):
    """Bad input to the simulator's API."""


@dataclass(eq=False)
class IsmgJob(Job):
    """An MO (key: its handset) or a status report (a key of its own): DELIVERs; `last_status` is
    the last DELIVER_RESP's Result."""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "parts": len(self.parts),
                "parts_delivered": self.next_part, "attempts": self.attempts, "redeliveries": self.redeliveries,
                "last_result": self.last_status, "last_error": self.last_error,
                "msg_ids": [msgid.text(p.msg_id) for p in self.parts]}


class SimIsmg:
    """The simulated ISMG. `start()` / `stop()` (or `with`); the port is `port` after `start()`."""

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
    ):
        """`version`: the highest the gateway speaks (0x20: a 2.0-only gateway). `report_stats`:
        handset → the Stat of its status reports. `international_source`: MOs come from
        ``86…`` (the country code in front) instead of the national number. `clock` gives the
        time in Msg_Ids and status reports."""
        self.sp_id = sp_id
        self.secret = secret
        self.host = host
        self.port = port
        self.version = version
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self.gateway_code = gateway_code
        self.response_timeout = response_timeout
        self.active_test_interval = active_test_interval
        self.redeliver_seconds = redeliver_seconds
        self.workers = max(1, workers)
        self.send_reports = send_reports
        self.report_stats = dict(report_stats or {})
        self.international_source = international_source
        self.country_code = country_code
        self.clock = clock
        self.reassembler = Reassembler()
        self._lock = threading.RLock()
        self._counters = Counters()
        self._submit_log: list[dict[str, Any]] = []
        self._msg_seq = itertools.count(1)
        self._link_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._report_seq = itertools.count(1)
        self._refs: dict[str, int] = {}
        self._stopping = threading.Event()
        self._conns: Connections[IsmgConn] = Connections(self._stopping)
        self._scheduler = Scheduler(self._deliver, workers=workers, name="simismg")
        self._accept_thread: threading.Thread | None = None
        self._listener: Listener | None = None
        self.started = False

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> SimIsmg:
        if self.started:
            return self
        self._listener = Listener(self.host, self.port)
        self.port = self._listener.port
        self.started = True
        self._accept_thread = threading.Thread(target=partial(self._listener.accept_until, self._stopping, self._accepted),
                                               name="simismg-accept", daemon=True)
        self._accept_thread.start()
        self._scheduler.start()
        log.info("simismg listening: cmpp %s:%s (SP %s, up to CMPP %x.%x)", self.host, self.port, self.sp_id,
                 self.version >> 4, self.version & 15)
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join every thread; queued jobs are cancelled."""
        if not self.started or self._stopping.is_set():
            return
        self._stopping.set()
        self._scheduler.stop()
        if self._listener is not None:
            self._listener.close()
        self._conns.close_all(join_timeout=5)
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(timeout=self.response_timeout + 5)
        self._scheduler.join(self.response_timeout + 5)
        log.info("simismg stopped")

    def __enter__(self) -> SimIsmg:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

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
        self._scheduler.wake_parked()  # jobs parked for want of a connection go now

    def conn_closed(self, conn: IsmgConn) -> None:
        log.info("simismg conn %s closed", conn.id)

    def connections(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "version": c.version, "peer": f"{c.addr[0]}:{c.addr[1]}"}
                for c in self._conns.open(_connected)]

    def active_test(self) -> list[int]:
        """Send an ACTIVE_TEST on every connection now; the sequences sent."""
        return [seq for c in self._conns.open(_connected) if (seq := c.active_test()) is not None]

    def drop_connections(self) -> int:
        """Close every connection without TERMINATE; how many were closed."""
        conns = self._conns.open()
        for c in conns:
            c.close()
        return len(conns)

    def count(self, key: str, n: int = 1) -> None:
        self._counters.add(key, n)

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()

    # ---------------------------------------------------------------- MT side
    def _new_msg_id(self) -> int:
        return cmpp.MsgId.at(self.clock(), self.gateway_code, next(self._msg_seq)).pack()

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
        """A SUBMIT from `conn`'s reader: judged, stored, answered, its reports queued."""
        self.count("submits_received")
        result, why = self._judge_submit(s)
        mid = self._new_msg_id() if result == Result.OK else 0
        handsets = [subscriber_key(d, self.country_code) for d in s.dest_terminal_ids]
        entry = {"t": time.time(), "conn": conn.id, "seq": sequence, "version": conn.version, "result": result,
                 "error": why, "msg_id": msgid.text(mid), "to": handsets, "dest_terminal_ids": list(s.dest_terminal_ids),
                 "src_id": s.src_id, "msg_src": s.msg_src, "service_id": s.service_id,
                 "fee_type": s.fee.fee_type, "fee_code": s.fee.fee_code, "fee_user_type": s.fee.user_type,
                 "fee_terminal_id": s.fee.terminal_id, "registered_delivery": s.registered_delivery,
                 "msg_fmt": s.msg_fmt, "pk_total": s.pk_total, "pk_number": s.pk_number, "tp_udhi": s.tp_udhi,
                 "link_id": s.link_id}
        with self._lock:
            self._submit_log.append(entry)
            del self._submit_log[:-SUBMITS_KEPT]
        if result != Result.OK:
            self.count("submits_rejected")
            log.info("simismg conn %s SUBMIT refused with Result %s: %s", conn.id, result, why)
            conn.send(cmpp.SubmitResp(0, result), sequence)
            return
        for handset in handsets:
            self._accept_part(s, handset, mid)
        if conn.send(cmpp.SubmitResp(mid, Result.OK), sequence) is None:
            return
        if s.registered_delivery == 1 and self.send_reports:
            for dest, handset in zip(s.dest_terminal_ids, handsets):
                self._queue_report(s, dest, handset, mid)

    def _accept_part(self, s: cmpp.Submit, handset: str, mid: int) -> None:
        self.count("mt_parts_received")
        payload, segment = text.split_content(s.tp_udhi, s.msg_content)
        if segment is not None:
            joined = self.reassembler.add(s.src_id, handset, segment.ref, segment.total, segment.seq, s.msg_fmt,
                                          payload, msgid.text(mid))
            if joined is not None:
                self._store(s.src_id, handset, *joined)
        else:
            self._store(s.src_id, handset, payload, s.msg_fmt, [msgid.text(mid)])

    def _store(self, source: str, handset: str, data: bytes, msg_fmt: int, ids: list[str]) -> None:
        msg = StoredMessage(id=ids[0], sender=source, to=handset, text=text.decode_text(msg_fmt, data),
                            parts=len(ids), data_coding=msg_fmt, received_at=time.time(), message_ids=ids)
        self.count("mt_received")
        self.mailbox.put(msg)

    def submit_log(self) -> list[dict[str, Any]]:
        """What each SUBMIT asked for (latest SUBMITS_KEPT) and the Result it got."""
        with self._lock:
            return [dict(e) for e in self._submit_log]

    def _queue_report(self, s: cmpp.Submit, dest: str, handset: str, mid: int) -> None:
        now = self.clock().strftime("%y%m%d%H%M")
        report = cmpp.StatusReport(mid, self.report_stats.get(handset, DELIVERED), now, now, dest,
                                   next(self._report_seq) & 0xFFFFFFFF)
        d = cmpp.Deliver(msg_id=self._new_msg_id(), dest_id=s.src_id, src_terminal_id=dest, service_id=s.service_id,
                         report=report)
        job_id = f"r{next(self._job_ids)}"
        self._scheduler.add(IsmgJob(job_id, job_id, "report", [d]))

    # ---------------------------------------------------------------- MO side
    def inject_mo(self, msisdn: str, short_code: str, message: str, *, msg_fmt: int | None = None,
                  service_id: str = "") -> dict[str, Any]:
        """Queue an MO from handset `msisdn` to `short_code`; returns {"id", "parts"} at once (its
        delivery: `mo_status`, `wait_mo`). `msg_fmt` 0, 8 or 15 (default: 0 for ASCII, else 8)."""
        if self._stopping.is_set():
            raise SimIsmgError("simulator stopped")
        if not msisdn or not short_code:
            raise SimIsmgError("from and to are required")
        with self._lock:
            ref = self._refs[msisdn] = (self._refs.get(msisdn, -1) + 1) & 0xFF
        try:
            parts = text.split_text(message, msg_fmt, ref)
        except ValueError as e:
            raise SimIsmgError(str(e)) from None
        source = msisdn
        if self.international_source and self.country_code and subscriber_key(msisdn, self.country_code) == msisdn:
            source = self.country_code + msisdn
        delivers = [cmpp.Deliver(msg_id=self._new_msg_id(), dest_id=short_code, src_terminal_id=source,
                                 msg_content=c, msg_fmt=parts.msg_fmt, service_id=service_id, tp_udhi=parts.tp_udhi,
                                 link_id=f"{next(self._link_ids):020d}")
                    for c in parts.contents]
        job = IsmgJob(f"mo{next(self._job_ids)}", msisdn, "mo", delivers)
        self.count("mo_injected")
        self._scheduler.add(job)
        return {"id": job.id, "parts": len(delivers)}

    def mo_status(self, job_id: str) -> dict[str, Any] | None:
        return self._scheduler.status(job_id)

    def wait_mo(self, job_id: str, timeout: float = 5.0,
                states: tuple[str, ...] = ("delivered", "rejected", "cancelled")) -> dict[str, Any] | None:
        """Until the MO (or report) `job_id` reaches one of `states`, at most `timeout` seconds."""
        return self._scheduler.wait(job_id, states, timeout)

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
            conn = self._conns.pick(_connected)
            if conn is None:
                self._later(job, "no connection", None, waiting_conn=True)
                return
            d = job.parts[job.next_part]
            if conn.version < Version.V30:  # 2.0 has no LinkID nor terminal types
                d = dataclasses.replace(d, link_id="", src_terminal_type=0)
            job.attempts += 1
            w = conn.send_deliver(d, self.response_timeout)
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


def _connected(c: IsmgConn) -> bool:
    return c.connected
