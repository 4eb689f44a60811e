"""The load SMSC: a minimal SMPP 3.4 server on loopback that drives MOs and times the MT replies.

This module owns the traffic and the measurement. It accepts binds (transceiver, or receiver +
transmitter), sends deliver_sm to many distinct subscribers (MSISDN ``13900000000 + i``) as fast
as the window lets it (or paced at a fixed rate), answers every submit_sm with a submit_sm_resp,
answers enquire_link and unbind, and counts deliver_sm_resp.

Matching and latency
    An MO's latency is the time from the load SMSC handing its deliver_sm to the socket to the
    arrival of the first submit_sm whose ``destination_addr`` equals the subscriber. Each
    subscriber has at most one MO in flight, so the match is unambiguous. For a multi-part reply
    only the first part counts; later parts (UDH concatenation IE or ``sar_segment_seqnum`` with
    a part number > 1) are counted as ``extra_parts`` and never matched. Timestamps are taken once
    per event-loop iteration (``time.perf_counter()``), so they include the load SMSC's own
    queueing of a batch, which is at most one loop iteration.

Window (``window`` argument)
    The window is the maximum number of *outstanding* MOs, where an MO is outstanding from the
    moment its deliver_sm is sent until BOTH its deliver_sm_resp AND its (first) submit_sm reply
    have arrived (or it is declared lost after ``mo_timeout``, or rejected by a non-zero
    deliver_sm_resp status). ``window=1`` is strictly one MO→MT round trip at a time;
    ``window=0`` means unbounded: only the subscriber count (one MO in flight per subscriber)
    and TCP flow control limit it. A subscriber gets its next MO only after its previous one is
    no longer outstanding.

Rate
    ``mo_mt_per_s`` = matched MO→MT round trips / (time of the last matching submit_sm − time
    of the first deliver_sm).

Cost discipline (the load SMSC must never be the bottleneck): one ``select`` loop, no threads;
deliver_sm bodies are pre-encoded once per (subscriber, text) with `smsbot.pdu` and only the
header and a 6-byte ``user_message_reference`` TLV (so repeated identical texts are not taken for
SMSC redeliveries) are added per MO; every loop iteration reads everything ready, handles all
complete PDUs, then writes all responses and new deliver_sm with one non-blocking ``send`` of the
joined batch (an output buffer, not a blocking ``sendall``, so neither side can deadlock on full
socket buffers).
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from smsbot import pdu as _pdu  # the lean codec: Framer, decode_submit_sm, encode_deliver_sm, ...
from smsbot.messages import CommandId, DeliverSm, Status, Tag

SUBSCRIBER_BASE = 13900000000
SHORT_CODE = "10086"
COUNTRY_CODE = "86"  # the bot addresses MTs internationally (TON 1): 86 + the national number

_HDR = struct.Struct(">IIII")
_UMR = struct.Struct(">HHH")  # user_message_reference TLV: tag, length 2, value
_UMR_TAG = int(Tag.USER_MESSAGE_REFERENCE)
_SAR_SEQ_TAG = int(Tag.SAR_SEGMENT_SEQNUM)

_DELIVER_SM = int(CommandId.DELIVER_SM)
_DELIVER_SM_RESP = int(CommandId.DELIVER_SM_RESP)
_SUBMIT_SM = int(CommandId.SUBMIT_SM)
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_ENQUIRE_LINK_RESP = int(CommandId.ENQUIRE_LINK_RESP)
_UNBIND = int(CommandId.UNBIND)
_UNBIND_RESP = int(CommandId.UNBIND_RESP)
_GENERIC_NACK = int(CommandId.GENERIC_NACK)
_BINDS = {int(CommandId.BIND_TRANSCEIVER): "trx", int(CommandId.BIND_RECEIVER): "rx",
          int(CommandId.BIND_TRANSMITTER): "tx"}

# Generate new MOs only while less than this is queued in user space for the MO link (the
# kernel's socket buffer comes on top). Small, so that an MO's timestamp is close to the moment
# the kernel takes it and responses are not stuck behind a long user-space backlog.
OUT_HIGH_WATER = 64 * 1024
RECV_SIZE = 1 << 20


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    steps: tuple[str, ...]  # texts a subscriber sends in turn, cycled
    conversation: bool = False  # a subscriber mid-script goes first, so scripts complete


WORKLOADS: dict[str, Workload] = {
    "a": Workload("a", "0000 (subscriptions menu) from subscribers with 3 subscriptions", ("0000",)),
    "b": Workload("b", "conversation: 0000, then 1, then 0000 (each after the previous reply)",
                  ("0000", "1", "0000"), conversation=True),
    "c": Workload("c", "unknown keyword (help reply)", ("HELLO",)),
}


@dataclass
class RunStats:
    workload: str
    window: int
    offered_per_s: float | None
    sent: int = 0
    completed: int = 0  # MOs whose first reply part arrived
    rejected: int = 0  # deliver_sm_resp with a non-zero status and no reply
    lost: int = 0  # no reply within mo_timeout, or still outstanding when the run ended
    resp: int = 0
    resp_errors: int = 0
    submits: int = 0
    extra_parts: int = 0
    unmatched: int = 0
    unmatched_resp: int = 0
    max_outstanding: int = 0
    t_first: float = 0.0
    t_last: float = 0.0
    t_end: float = 0.0
    ended_by: str = ""
    latencies: array = field(default_factory=lambda: array("d"))

    @property
    def rate(self) -> float | None:
        span = self.t_last - self.t_first
        return self.completed / span if self.completed and span > 0 else None

    def summary(self) -> dict:
        from bench.report import percentile

        lat = sorted(self.latencies)
        pct = {q: percentile(lat, q) for q in (50, 95, 99, 100)}
        span = (self.t_end or self.t_last) - self.t_first if self.t_first else 0.0
        return {
            "mo_mt_per_s": round(self.rate, 1) if self.rate else None,
            "achieved_per_s": round(self.completed / span, 1) if span > 0 else None,
            "p50_ms": _ms(pct[50]), "p95_ms": _ms(pct[95]), "p99_ms": _ms(pct[99]), "max_ms": _ms(pct[100]),
            "mos_sent": self.sent, "mos_completed": self.completed, "mos_rejected": self.rejected,
            "mos_lost": self.lost, "deliver_sm_resp": self.resp, "deliver_sm_resp_errors": self.resp_errors,
            "submit_sm": self.submits, "extra_parts": self.extra_parts, "unmatched_submit_sm": self.unmatched,
            "max_outstanding": self.max_outstanding, "elapsed_s": round(span, 3), "ended_by": self.ended_by,
        }


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000.0, 3)


class _Mo:
    """One MO in flight."""

    __slots__ = ("sub", "msisdn", "seq", "t_sent", "resp", "replied")

    def __init__(self, sub: int, msisdn: str, seq: int, t_sent: float):
        self.sub = sub
        self.msisdn = msisdn
        self.seq = seq
        self.t_sent = t_sent
        self.resp = False
        self.replied = False


class _Conn:
    __slots__ = ("sock", "fileno", "framer", "out", "out_size", "pending", "bind", "system_id", "seq", "closing",
                 "peer")

    def __init__(self, sock: socket.socket, peer):
        self.sock = sock
        self.fileno = sock.fileno()
        self.framer = _pdu.Framer()
        self.out: list[bytes] = []
        self.out_size = 0
        self.pending = b""  # the unsent tail of the last write
        self.bind: str | None = None
        self.system_id = ""
        self.seq = 0
        self.closing = False
        self.peer = peer

    def queue(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def next_seq(self) -> int:
        self.seq = 1 if self.seq >= 0x7FFFFFFF else self.seq + 1
        return self.seq


class _Run:
    """State of one workload run (the driver side)."""

    def __init__(self, wl: Workload, window: int, messages: int, subscribers: int, rate: float | None,
                 mo_timeout: float, stats: RunStats):
        self.wl = wl
        self.window = window
        self.messages = messages
        self.rate = rate
        self.mo_timeout = mo_timeout
        self.stats = stats
        self.msisdns = [str(SUBSCRIBER_BASE + i) for i in range(subscribers)]
        self.step = [0] * subscribers
        self.umr = [0] * subscribers
        self.idle: deque[int] = deque(range(subscribers))
        self.inflight: dict[str, _Mo] = {}  # by msisdn; insertion order == send order
        self.by_seq: dict[int, _Mo] = {}
        self.outstanding = 0
        self.t0 = 0.0
        nsteps = len(wl.steps)
        # pre-encoded deliver_sm bodies (header stripped) per step per subscriber
        self.bodies: list[list[bytes]] = []
        for text in wl.steps:
            per_sub = []
            for m in self.msisdns:
                full = _pdu.encode_deliver_sm(DeliverSm(
                    sequence=1, source_addr_ton=1, source_addr_npi=1, source_addr=m,
                    dest_addr_ton=0, dest_addr_npi=0, destination_addr=SHORT_CODE,
                    data_coding=0, short_message=text.encode("ascii")))
                per_sub.append(bytes(full[16:]))
            self.bodies.append(per_sub)
        self.nsteps = nsteps
        self.pdu_size = 16 + 6 + max(len(b) for per_sub in self.bodies for b in per_sub)


class LoadSmsc:
    """The SMPP server. Drive it with `wait_bound`, `run`, `pump`, `run_until`; `close` when done."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError("the load SMSC listens on loopback only")
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(8)
        self.lsock.setblocking(False)
        self.conns: dict[int, _Conn] = {}
        self.binds: list[tuple[str, str]] = []  # (mode, system_id) seen, for reporting
        self.message_id = 0
        self._run: _Run | None = None
        self._rbuf = bytearray(RECV_SIZE)
        self._rview = memoryview(self._rbuf)

    @property
    def port(self) -> int:
        return self.lsock.getsockname()[1]

    # ------------------------------------------------------------------ connection plumbing

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._drop(c)
        try:
            self.lsock.close()
        except OSError:
            pass
        self._rview.release()

    def _drop(self, c: _Conn) -> None:
        self.conns.pop(c.fileno, None)
        try:
            c.sock.close()
        except OSError:
            pass

    def mo_conn(self) -> _Conn | None:
        for c in self.conns.values():
            if c.bind in ("trx", "rx") and not c.closing:
                return c
        return None

    def bound(self) -> bool:
        """True once some bind can receive MOs (and, for rx, a transmitter is bound too)."""
        modes = {c.bind for c in self.conns.values() if not c.closing}
        return "trx" in modes or {"rx", "tx"} <= modes

    def _accept(self) -> None:
        while True:
            try:
                s, peer = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(s, peer)
            self.conns[c.fileno] = c

    def _flush(self, c: _Conn) -> None:
        if c.out:
            data = (c.pending + b"".join(c.out)) if c.pending else (c.out[0] if len(c.out) == 1 else b"".join(c.out))
            c.out = []
            c.out_size = 0
        else:
            data = c.pending
        if not data:
            return
        try:
            n = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET):
                self._drop(c)
                return
            raise
        c.pending = data[n:] if n < len(data) else b""
        if c.closing and not c.pending:
            self._drop(c)

    def _frames(self, c: _Conn) -> list[tuple[int, int, int, bytes]] | None:
        """The PDUs `c` has sent (None: nothing now, or the link is gone: closed or unframeable)."""
        # recv_into a reused buffer: a plain recv(1 MiB) makes glibc mmap + mremap + munmap a
        # fresh 1 MiB block per call, which cost ~25% of the rate at window 1
        try:
            n = c.sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            n = 0
        if not n:
            self._drop(c)
            return None
        try:
            return c.framer.feed(self._rview[:n].tobytes())
        except _pdu.FramingError:
            self._drop(c)  # an unframeable stream: like a real SMSC, drop the link
            return None

    def _read(self, c: _Conn, now: float) -> None:
        frames = self._frames(c)
        if frames is None:
            return
        run = self._run
        out = c.queue
        for cmd, status, seq, body in frames:
            if cmd == _DELIVER_SM_RESP:
                if run is not None:
                    self._mo_resp(run, seq, status != 0)
            elif cmd == _SUBMIT_SM:
                self.message_id += 1
                out(_pdu.encode_submit_sm_resp(seq, 0, format(self.message_id, "x")))
                if run is None:
                    continue
                sm, tlvs = _pdu.decode_submit_sm(seq, body)
                dest = sm.destination_addr
                if sm.dest_addr_ton == 1 and dest.startswith(COUNTRY_CODE):
                    dest = dest[len(COUNTRY_CODE):]
                self._submitted(run, dest, _continuation(sm, tlvs), now)
            elif cmd == _ENQUIRE_LINK:
                out(_pdu.encode_header(_ENQUIRE_LINK_RESP, 0, seq))
            elif cmd in _BINDS:
                self._bind(c, cmd, seq, body)
            elif cmd == _UNBIND:
                out(_pdu.encode_header(_UNBIND_RESP, 0, seq))
                c.closing = True
            elif cmd == _ENQUIRE_LINK_RESP or cmd == _GENERIC_NACK or cmd & 0x80000000:
                continue
            else:
                out(_pdu.encode_header(_GENERIC_NACK, int(Status.RINVCMDID), seq))

    def _mo_resp(self, run: _Run, seq: int, failed: bool) -> None:
        """The response to the MO sent with `seq` (`failed`: a status other than 0)."""
        stats = run.stats
        mo = run.by_seq.pop(seq, None)
        if mo is None:
            stats.unmatched_resp += 1
            return
        stats.resp += 1
        mo.resp = True
        if failed:
            stats.resp_errors += 1
            if not mo.replied:
                stats.rejected += 1
                self._finish(run, mo)
                return
        if mo.replied:
            self._finish(run, mo)

    def _submitted(self, run: _Run, dest: str, continuation: bool, now: float) -> None:
        """A submit to subscriber `dest` (national number); the first part of a reply is matched."""
        stats = run.stats
        stats.submits += 1
        if continuation:
            stats.extra_parts += 1
            return
        mo = run.inflight.get(dest)
        if mo is None or mo.replied:
            stats.unmatched += 1
            return
        mo.replied = True
        stats.latencies.append(now - mo.t_sent)
        stats.completed += 1
        stats.t_last = now
        if mo.resp:
            self._finish(run, mo)

    def _bind(self, c: _Conn, cmd: int, seq: int, body: bytes) -> None:
        mode = _BINDS[cmd]
        try:
            system_id = _pdu.decode_bind(body)["system_id"]
        except _pdu.PduError:  # a malformed bind is still answered
            system_id = ""
        if c.bind is not None:
            c.queue(_pdu.encode_bind_resp(cmd | 0x80000000, int(Status.RALYBND), seq, "loadsmsc"))
            return
        c.bind = mode
        c.system_id = system_id
        self.binds.append((mode, system_id))
        c.queue(_pdu.encode_bind_resp(cmd | 0x80000000, 0, seq, "loadsmsc"))

    # ------------------------------------------------------------------ event loop

    def pump(self, timeout: float) -> None:
        """One loop iteration without generating MOs (answers binds, enquire_link, submit_sm, unbind)."""
        self._flush_all()
        self._iterate(timeout)
        self._flush_all()

    def _iterate(self, timeout: float) -> float:
        conns = self.conns
        rl = [self.lsock, *[c.sock for c in conns.values()]]
        wl = [c.sock for c in conns.values() if c.pending]
        try:
            r, w, _ = select.select(rl, wl, [], max(0.0, timeout))
        except InterruptedError:
            r, w = [], []
        now = time.perf_counter()
        for s in r:
            if s is self.lsock:
                self._accept()
                continue
            c = conns.get(s.fileno())
            if c is not None:
                self._read(c, now)
        return now

    def _flush_all(self) -> None:
        for c in list(self.conns.values()):
            if c.out or c.pending:
                self._flush(c)

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._iterate(min(left, 0.05))
            self._flush_all()
        return True

    def wait_bound(self, timeout: float, alive: Callable[[], bool] | None = None) -> None:
        """Serve until a bind able to receive MOs exists; raise TimeoutError / RuntimeError."""
        deadline = time.monotonic() + timeout
        while not self.bound():
            if alive is not None and not alive():
                raise RuntimeError("the ESME process exited before binding")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no bind within {timeout:.0f}s")
            self._iterate(min(left, 0.05))
            self._flush_all()

    # ------------------------------------------------------------------ the workload driver

    def _finish(self, run: _Run, mo: _Mo) -> None:
        """The MO is no longer outstanding: free its window slot and requeue its subscriber."""
        if run.inflight.pop(mo.msisdn, None) is None:
            return
        run.outstanding -= 1
        run.by_seq.pop(mo.seq, None)
        sub = mo.sub
        st = run.step[sub] + 1
        run.step[sub] = st
        if run.wl.conversation and st % run.nsteps:
            run.idle.appendleft(sub)
        else:
            run.idle.append(sub)

    def _expire(self, run: _Run, now: float) -> None:
        """Declare MOs older than mo_timeout lost; their subscribers are retired (late replies
        would otherwise be matched to a later MO)."""
        limit = now - run.mo_timeout
        inflight = run.inflight
        while inflight:
            mo = next(iter(inflight.values()))
            if mo.t_sent > limit:
                return
            del inflight[mo.msisdn]
            run.by_seq.pop(mo.seq, None)
            run.outstanding -= 1
            if not mo.replied:
                run.stats.lost += 1

    @staticmethod
    def _budget(run: _Run, c: _Conn, now: float, pdu_size: int) -> int:
        """How many new MOs may go now: the rate, the window, idle subscribers, the output buffer."""
        stats = run.stats
        budget = run.messages - stats.sent
        if run.rate is not None:
            budget = min(budget, int((now - run.t0) * run.rate) + 1 - stats.sent)
        if run.window:
            budget = min(budget, run.window - run.outstanding)
        room = OUT_HIGH_WATER - c.out_size - len(c.pending)
        if budget <= 0 or room <= 0:
            return 0
        return min(budget, len(run.idle), room // pdu_size + 1)

    @staticmethod
    def _sent(run: _Run, n: int, now: float) -> None:
        """`n` MOs went out at `now`."""
        stats = run.stats
        if not stats.sent:
            stats.t_first = now
        stats.sent += n
        run.outstanding += n
        if run.outstanding > stats.max_outstanding:
            stats.max_outstanding = run.outstanding

    def _fill(self, run: _Run, c: _Conn, now: float) -> None:
        budget = self._budget(run, c, now, run.pdu_size)
        if budget <= 0:
            return
        idle = run.idle
        step, umr, bodies, msisdns = run.step, run.umr, run.bodies, run.msisdns
        nsteps = run.nsteps
        inflight, by_seq = run.inflight, run.by_seq
        hdr_pack, umr_pack = _HDR.pack, _UMR.pack
        parts = []
        seq = c.seq
        for _ in range(budget):
            sub = idle.popleft()
            body = bodies[step[sub] % nsteps][sub]
            seq = 1 if seq >= 0x7FFFFFFF else seq + 1
            ref = umr[sub] = (umr[sub] + 1) & 0xFFFF
            parts.append(hdr_pack(len(body) + 22, _DELIVER_SM, 0, seq))
            parts.append(body)
            parts.append(umr_pack(_UMR_TAG, 2, ref))
            mo = _Mo(sub, msisdns[sub], seq, now)
            inflight[mo.msisdn] = mo
            by_seq[seq] = mo
        c.seq = seq
        c.queue(b"".join(parts))
        self._sent(run, budget, now)

    def run(self, workload: Workload, window: int, messages: int, subscribers: int, *,
            rate: float | None = None, time_limit: float = 60.0, drain_timeout: float = 30.0,
            mo_timeout: float = 30.0, milestones: dict[int, Callable[[], None]] | None = None) -> RunStats:
        """Send `messages` MOs (cycling through the subscribers) and return the measurements.

        Stops sending after `time_limit` seconds, then waits at most `drain_timeout` for the
        outstanding MOs. `milestones` maps a completed-MO count to a callback run once when the
        count is reached (used for RSS samples during the soak)."""
        if not self.bound():
            raise RuntimeError("no ESME is bound")
        stats = RunStats(workload.name, window, rate)
        run = _Run(workload, window, messages, subscribers, rate, mo_timeout, stats)
        marks = sorted((milestones or {}).items())
        self._run = run
        try:
            start = time.perf_counter()
            run.t0 = start
            send_deadline = start + time_limit
            hard_deadline = send_deadline + drain_timeout
            now = start
            sending = True
            while True:
                c = self.mo_conn()
                if c is None:
                    stats.ended_by = "bind lost"
                    break
                if sending:
                    if stats.sent >= messages or now >= send_deadline:
                        sending = False
                    else:
                        self._fill(run, c, time.perf_counter())
                if not sending and run.outstanding == 0:
                    stats.ended_by = "done" if stats.sent >= messages else "time limit"
                    break
                if now >= hard_deadline:
                    stats.ended_by = "drain timeout"
                    break
                self._flush_all()
                # how long may select sleep?
                if sending and run.rate is not None and stats.sent < messages:
                    due = run.t0 + stats.sent / run.rate
                    timeout = min(0.05, max(0.0, due - time.perf_counter()))
                else:
                    timeout = 0.05
                now = self._iterate(timeout)
                if run.inflight and now - next(iter(run.inflight.values())).t_sent > run.mo_timeout:
                    self._expire(run, now)
                while marks and stats.completed >= marks[0][0]:
                    marks.pop(0)[1]()
            stats.t_end = time.perf_counter()
            stats.lost += len(run.inflight)
            self._flush_all()
        finally:
            self._run = None
        return stats


def _continuation(sm, tlvs) -> bool:
    """True for part 2.. of a concatenated MT (UDH IEI 0x00/0x08 or sar_segment_seqnum)."""
    if tlvs:
        v = tlvs.get(_SAR_SEQ_TAG)
        if v:
            return v[-1] > 1
    if sm.esm_class & 0x40:
        ud = sm.short_message
        if not ud:
            return False
        end = 1 + ud[0]
        i = 1
        while i + 1 < end and i + 1 < len(ud):
            iei, ln = ud[i], ud[i + 1]
            val = ud[i + 2:i + 2 + ln]
            if iei == 0x00 and ln == 3:
                return val[2] > 1
            if iei == 0x08 and ln == 4:
                return val[3] > 1
            i += 2 + ln
    return False
