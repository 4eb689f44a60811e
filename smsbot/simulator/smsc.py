"""SimSmsc: a simulated SMSC (SMPP 3.4 server) for testing smsbot, plus its HTTP control API.

What it does, like a real SMSC:
- accepts bind_transceiver / bind_receiver / bind_transmitter with the configured system_id and
  password (ESME_RINVSYSID / ESME_RINVPASWD otherwise); several binds at once;
- answers enquire_link and unbind, sends generic_nack for unknown commands, sends its own
  enquire_link when a bind is idle;
- takes submit_sm (→ submit_sm_resp with a unique hex message_id), joins concatenated parts
  (UDH IEI 0x00/0x08 or sar_* TLVs) into whole messages and keeps them in a per-MSISDN mailbox
  until a handset picks them up; sends a delivery receipt when registered_delivery asks for one;
- delivers MOs injected by handsets (`inject_mo`) as deliver_sm, round-robin over the
  receiver-capable binds, and redelivers on temporary errors / timeouts / no bind;
- behaves like a tidy SMSC (profile ``default``) or like SMSCs met in the field (profile
  ``field``: no message references, an 8-octet service_type, sequence numbers above 0x7FFFFFFF,
  message_payload with a trailing NUL, data_sm MOs, receipts with data_coding 8 and no TLVs, reused
  message ids), each behaviour a flag (`set_profile`, ``POST /profile``; see `profiles`); sends a
  partial PDU and falls silent on request (`send_partial`);
- serves SMPP over TLS when given an `ssl.SSLContext` (each connection's TLS is terminated by one
  proxy thread, so the SSL object is only ever used by one thread);
- misbehaves on request (`set_faults`, see `faults` and ``POST /faults`` in `control`): slow
  submit_sm_resp, throttling (patterns or a max TPS per bind), permanent rejects per destination,
  connections dropped with a submit_sm unanswered or right after a resp.

One reader thread per connection (`connection.Conn`), a small pool of delivery workers, one
accept thread and the HTTP control server thread (`control`). `stop()` ends and joins them all.
MOs are delivered in order per handset (a handset's next MO waits while one is in flight); each
part of a long MO goes to the next receiver-capable bind in turn, so with several binds the parts
of one message can land on different binds, as with a real SMSC.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import select
import signal
import socket
import ssl
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from smsbot import codec, pdu
from smsbot.config import BillingSettings, Settings, SimulatorSettings, SmscSettings
from smsbot.messages import CommandId, DataCoding, DeliverSm, EsmClass, Segment, Status, Tag
from smsbot.msisdn import DEFAULT_COUNTRY_CODE, TON_INTERNATIONAL, TON_NATIONAL, subscriber_key

from . import profiles
from .connection import Conn, Waiter
from .events import SimEvents
from .faults import Delayer, FaultError, Faults, Verdict
from .mailbox import Mailbox, Reassembler, StoredMessage
from .mo import PartsError, build_mo_parts
from .control import ControlServer
from .errors import SimSmscError

log = logging.getLogger("smsbot.simulator")


def handset_number(addr: str, ton: int, country_code: str | None) -> str:
    """The handset an MT is for, reading its ``destination_addr`` under its TON as a strict SMSC
    does: international (1) is digits beginning with a country code: the home one's numbers are
    its handsets (``8613800138000`` -> ``13800138000``), any other is abroad (``+447700900123``;
    national digits sent as international, ``13800138000`` under TON 1, are +1 380… and reach no
    handset here); national (2) or unknown (0): the number read leniently as the bot does."""
    if ton == TON_INTERNATIONAL:
        digits = addr[1:] if addr.startswith("+") else addr
        cc = country_code or ""
        if cc and digits.startswith(cc) and len(digits) > len(cc):
            return digits[len(cc):]
        return "+" + digits
    return subscriber_key(addr, country_code)


def mo_source(msisdn: str, international: bool, country_code: str | None) -> tuple[str, int]:
    """(source_addr, TON) of an MO from handset `msisdn` as the tester named it: a name already
    international (``+44…``, ``8613800138000``) is sent so under TON 1; a national number under
    TON 2, or with `international` (the field profile's ``international_source``) as the country
    code and the number under TON 1."""
    if msisdn.startswith("+"):
        return msisdn[1:], TON_INTERNATIONAL
    if subscriber_key(msisdn, country_code) != msisdn:
        return msisdn, TON_INTERNATIONAL
    if international and country_code and msisdn.isdigit():
        return country_code + msisdn, TON_INTERNATIONAL
    return msisdn, TON_NATIONAL

TLS_HANDSHAKE_TIMEOUT = 10.0
TEMPORARY_STATUSES = frozenset({Status.RX_T_APPN, Status.RMSGQFUL, Status.RTHROTTLED, Status.RSYSERR})
MESSAGE_STATE_DELIVERED = 2
JOBS_KEPT = 20000  # MO outcomes remembered for mo_status (oldest finished ones are forgotten)
HISTORY_KEPT = 50  # delivery attempts remembered per MO
SUBMITS_KEPT = 10000  # submit_sm log entries kept (submit_log)

# --------------------------------------------------------------------------------------------
# MO jobs


@dataclass
class _MoJob:
    id: str
    msisdn: str
    short_code: str
    parts: list[DeliverSm]
    kind: str = "mo"  # "mo" | "receipt"
    carrier: str = "deliver_sm"  # "deliver_sm" | "data_sm"
    duplicate: bool = False
    lost_resp: bool = False  # the resp of the last part is "lost": link dropped, MO redelivered on the next bind
    redeliver: bool = True  # False: after a lost resp the MO counts as delivered, never sent again
    state: str = "queued"  # queued | delivering | delivered | rejected | cancelled
    next_part: int = 0
    attempts: int = 0
    redeliveries: int = 0
    last_status: int | None = None
    last_error: str = ""
    created_at: float = field(default_factory=time.time)
    delivered_at: float | None = None
    waiting_bind: bool = False
    system_id: str | None = None  # receipts go to a bind of this system
    history: list[dict[str, Any]] = field(default_factory=list)
    wire: list[str] = field(default_factory=list)  # hex of each part as last written

    def note(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.history.append(entry)
        if len(self.history) > HISTORY_KEPT:
            del self.history[0]
        return entry

    @property
    def order_key(self) -> str:
        return self.msisdn if self.kind == "mo" else f"{self.kind}:{self.id}"

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
            "user_message_reference": _umr_of(self.parts[0]) if self.parts else None,
            "history": list(self.history[-20:]),
            "wire": list(self.wire),
        }


def _umr_of(d: DeliverSm) -> int | None:
    v = d.tlvs.get(Tag.USER_MESSAGE_REFERENCE)
    return int.from_bytes(v, "big") if v else None


# --------------------------------------------------------------------------------------------
# the simulator


class SimSmsc:
    """The simulated SMSC. `start()` / `stop()` for in-process use, `serve_forever()` for the CLI.

    Ports given as 0 are picked by the OS; the actual ones are `smpp_port` / `control_port` after
    `start()`. `control_url` is the control API's base URL.
    """

    name = "simsmsc"

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        smsc: SmscSettings | None = None,
        *,
        host: str | None = None,
        smpp_port: int | None = None,
        control_port: int | None = None,
        response_timeout: float = 5.0,
        enquire_link_interval: float = 30.0,
        workers: int = 4,
        control: bool = True,
        profile: str = "default",
        flags: dict[str, Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        country_code: str | None = DEFAULT_COUNTRY_CODE,
    ):
        """`profile` (``default`` | ``field``) and `flags` on top of it: see `profiles` and
        `set_profile`. `ssl_context` (a server-side context with its certificate loaded) makes the
        SMPP port speak TLS only."""
        settings = settings or SimulatorSettings()
        smsc = smsc or SmscSettings()
        self.settings = settings
        self.host = host if host is not None else settings.host
        self.smpp_port = smpp_port if smpp_port is not None else settings.smpp_port
        self.control_port = control_port if control_port is not None else settings.control_port
        self.system_id = smsc.system_id
        self.password = smsc.password
        self.send_receipts = settings.send_receipts
        self.redeliver_seconds = settings.redeliver_seconds
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.workers = max(1, workers)
        self.with_control = control
        self.ssl_context = ssl_context
        self.country_code = country_code  # the home network's: international addresses with it are its handsets
        try:
            self.behaviour = profiles.make_behaviour(profile, **(flags or {}))
        except profiles.ProfileError as e:
            raise SimSmscError(str(e)) from None
        self.profile = profile

        self.mailbox = Mailbox()
        self.reassembler = Reassembler()
        self.events = SimEvents()  # what the web page shows (control API: GET /events, /web/...)
        self.mailbox.on_take = self.events.picked_up
        self.short_codes: list[str] = []  # the bot's short codes, offered by the web page
        self.timezone = BillingSettings().timezone  # the zone the web page shows times in (billing.timezone)
        self._lock = threading.RLock()
        self._conns: list[Conn] = []
        self._rr = 0
        self._stats: dict[str, int] = {
            k: 0
            for k in (
                "binds", "binds_total", "bind_failures", "mo_injected", "mo_delivered", "mo_redelivered",
                "mo_rejected", "mo_duplicates_sent", "mo_parts_sent", "mt_received", "mt_parts_received",
                "receipts_sent", "enquire_links_sent", "generic_nacks_sent", "connections_dropped",
                "submits_received", "submits_throttled", "submits_rejected", "submits_dropped",
                "max_outstanding_submits", "enquire_links_received", "unbinds_received",
                "mo_data_sm_sent", "partials_sent", "tls_handshakes", "tls_handshake_failures",
            )
        }
        self.faults = Faults()
        self._delayer = Delayer()
        self._submit_log: deque[dict[str, Any]] = deque(maxlen=SUBMITS_KEPT)
        self._msg_counter = 0  # message ids handed out since the start (or restart_message_ids)
        self._data_sm_count = 0  # single-part MOs counted for data_sm_every
        self._mo_ids = itertools.count(1)
        self._jobs: dict[str, _MoJob] = {}
        self._sched: list[tuple[float, int, _MoJob]] = []
        self._sched_seq = itertools.count()
        self._sched_cond = threading.Condition(self._lock)
        self._busy_keys: set[str] = set()
        self._rand = random.Random()
        self._handset_umr: dict[str, int] = {}
        self._handset_ref: dict[str, int] = {}
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._control = None
        self.started = False

    @classmethod
    def from_settings(cls, settings: Settings, **kw: Any) -> SimSmsc:
        """Simulator configured from the bot's settings: listens on `settings.simulator`, accepts
        binds with `settings.smsc.system_id` / `password`."""
        kw.setdefault("response_timeout", settings.smsc.response_timeout)
        # simulator.profile / simulator.profile_flags, when the config has them
        profile = getattr(settings.simulator, "profile", None)
        if profile and "profile" not in kw:
            kw["profile"] = str(getattr(profile, "value", profile))
        flags = getattr(settings.simulator, "profile_flags", None)
        if flags and "flags" not in kw:
            kw["flags"] = dict(flags)
        kw.setdefault("country_code", settings.subscribers.country_code)
        sim = cls(settings.simulator, settings.smsc, **kw)
        sim.short_codes = [sc.code for sc in settings.short_codes]
        sim.timezone = settings.billing.timezone
        return sim

    def handset_key(self, name: str) -> str:
        """The mailbox of handset `name`: ``8613800138000`` and ``13800138000`` are one handset."""
        return subscriber_key(name, self.country_code)

    # ---------------------------------------------------------------- profile
    def set_profile(self, profile: str | None = None, **flags: Any) -> dict[str, Any]:
        """Switch to `profile` (its flags, then `flags` on top); with no profile, change only the
        given flags of the current behaviour. Applies to what is sent from now on (a bind keeps its
        sequence counter; `sequence_start` applies to new binds). Returns `describe_profile()`."""
        with self._lock:
            try:
                if profile is None:
                    merged = {**self.behaviour.to_dict(), **flags}
                    self.behaviour = profiles.make_behaviour("default", **merged)
                else:
                    self.behaviour = profiles.make_behaviour(profile, **flags)
                    self.profile = profile
            except profiles.ProfileError as e:
                raise SimSmscError(str(e)) from None
            self._data_sm_count = 0
        log.info("simsmsc profile %s %s", self.profile, self.behaviour.to_dict())
        desc = self.describe_profile()
        self.events.publish("profile", desc)
        return desc

    def describe_profile(self) -> dict[str, Any]:
        """{"profile": name, "flags": every flag's value, "overrides": those differing from the profile}."""
        with self._lock:
            flags = self.behaviour.to_dict()
            base = profiles.make_behaviour(self.profile).to_dict()
            return {"profile": self.profile, "flags": flags,
                    "overrides": {k: v for k, v in flags.items() if base.get(k) != v}}

    def restart_message_ids(self) -> None:
        """Message ids start again from the first one (as after an SMSC restart): the next MTs get
        ids earlier MTs had."""
        with self._lock:
            self._msg_counter = 0

    # ---------------------------------------------------------------- lifecycle
    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    def start(self) -> SimSmsc:
        """Open the SMPP listener and the control API; returns at once (threads do the work)."""
        if self.started:
            return self
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lst.bind((self.host, self.smpp_port))
            lst.listen(64)
        except OSError:
            lst.close()
            raise
        lst.settimeout(0.25)
        self._listener = lst
        self.smpp_port = lst.getsockname()[1]
        if self.with_control:
            try:
                self._control = ControlServer(self, self.host, self.control_port)
            except OSError:
                lst.close()
                raise
            self.control_port = self._control.port
        self.started = True
        self._delayer.start()
        self._spawn(self._accept_loop, "simsmsc-accept")
        for i in range(self.workers):
            self._spawn(self._worker, f"simsmsc-deliver-{i}")
        if self._control:
            self._control.start()
        log.info("simsmsc listening: smpp%s %s:%s control %s", " (TLS)" if self.ssl_context else "", self.host,
                 self.smpp_port, f"{self.control_url} (handsets page: {self.control_url}/)" if self._control else "off")
        return self

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:  # finished ones (TLS proxies of closed connections) are forgotten
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def stop(self) -> None:
        """Close the listener, every bind and the control API; join every thread."""
        if not self.started or self._stopping.is_set():
            return
        self._stopping.set()
        self._delayer.stop()
        self.mailbox.close()
        self.events.close()
        with self._sched_cond:
            self._sched_cond.notify_all()
        if self._control:
            self._control.stop()
        if self._listener:
            try:
                self._listener.close()
            except OSError:
                pass
        for c in self._all_conns():
            c.close()
        for c in self._all_conns(include_closed=True):
            if c.thread.is_alive() and c.thread is not threading.current_thread():
                c.thread.join(timeout=5)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=max(5.0, self.response_timeout + 1))
        with self._lock:
            for job in self._jobs.values():
                if job.state in ("queued", "delivering"):
                    job.state = "cancelled"
        log.info("simsmsc stopped")

    def __enter__(self) -> SimSmsc:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until SIGINT/SIGTERM (or `request_stop()`), then stop."""

        def handler(signum: int, frame: Any) -> None:
            self._stop_requested.set()

        old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, handler)
        try:
            self.start()
            while not self._stop_requested.is_set():
                time.sleep(0.2)
        finally:
            self.stop()
            for sig, h in old.items():
                signal.signal(sig, h)

    def request_stop(self) -> None:
        self._stop_requested.set()

    # ---------------------------------------------------------------- connections
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                self._spawn(lambda s=sock, a=addr: self._tls_proxy(s, a), f"simsmsc-tls-{addr[1]}")
            elif not self._add_conn(sock, addr):
                break

    def _add_conn(self, sock: socket.socket, addr: Any) -> bool:
        conn = Conn(self, sock, addr)
        with self._lock:
            if self._stopping.is_set():
                sock.close()
                return False
            self._conns.append(conn)
            self._closed_conns_prune()
        conn.thread.start()
        log.info("simsmsc conn %s from %s", conn.id, addr)
        return True

    def _tls_proxy(self, raw: socket.socket, addr: Any) -> None:
        """Terminate TLS for one connection: the handshake, then bytes both ways between the TLS
        socket and a socketpair whose other end is an ordinary `Conn`. Only this thread touches the
        SSL object. EOF on either side is passed on as a FIN (a `Conn.drop` stays a drop)."""
        assert self.ssl_context is not None
        raw.settimeout(TLS_HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            tls.do_handshake()
        except (OSError, ValueError) as e:
            log.info("simsmsc TLS handshake with %s failed: %s", addr, e)
            self._count("tls_handshake_failures")
            raw.close()
            return
        self._count("tls_handshakes")
        tls.settimeout(30.0)  # only bounds a TLS record left half-written by the ESME
        inner, outer = socket.socketpair()
        if not self._add_conn(inner, addr):
            for s in (outer, tls):
                s.close()
            return
        to_plain = True  # the ESME's direction still open
        to_tls = True  # ours still open
        try:
            while (to_plain or to_tls) and not self._stopping.is_set():
                watch = ([tls] if to_plain else []) + ([outer] if to_tls else [])
                if to_plain and tls.pending():
                    ready = [tls]
                else:
                    ready, _, _ = select.select(watch, [], [], 0.25)
                if tls in ready:
                    try:
                        data = tls.recv(65536)
                    except ssl.SSLWantReadError:
                        data = None
                    except OSError:
                        data = b""
                    if data is None:
                        pass
                    elif data:
                        outer.sendall(data)
                    else:
                        to_plain = False
                        try:
                            outer.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                if outer in ready:
                    try:
                        data = outer.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        tls.sendall(data)
                    else:
                        to_tls = False
                        try:
                            raw.shutdown(socket.SHUT_WR)  # a FIN, as for a plain connection
                        except OSError:
                            pass
                if not to_tls and to_plain and not self._all_conns_has(inner):
                    break  # our side is closed and gone: nothing more to pass on
        except OSError as e:
            log.info("simsmsc TLS proxy for %s ended: %s", addr, e)
        finally:
            for s in (outer, tls):
                try:
                    s.close()
                except OSError:
                    pass

    def _all_conns_has(self, sock: socket.socket) -> bool:
        with self._lock:
            return any(c.sock is sock and not c.closed.is_set() for c in self._conns)

    def _closed_conns_prune(self) -> None:
        # keep closed connections whose thread still runs (stop() joins them), forget the rest
        self._conns = [c for c in self._conns if not c.closed.is_set() or c.thread.is_alive()]

    def _all_conns(self, include_closed: bool = False) -> list[Conn]:
        with self._lock:
            return [c for c in self._conns if include_closed or not c.closed.is_set()]

    def _on_bound(self, conn: Conn) -> None:
        self.events.bind("opened", self._bind_info(conn), self.binds())
        with self._sched_cond:
            if conn.can_receive:
                # jobs parked for lack of a bind go now
                now = time.monotonic()
                for i, (due, n, job) in enumerate(self._sched):
                    if job.waiting_bind:
                        job.waiting_bind = False
                        self._sched[i] = (now, n, job)
                heapq.heapify(self._sched)
                self._sched_cond.notify_all()

    def _update_bind_count(self, new_bind: bool = True) -> None:
        with self._lock:
            if new_bind:
                self._stats["binds_total"] += 1
            self._stats["binds"] = sum(1 for c in self._conns if c.bound and not c.closed.is_set())

    def _conn_closed(self, conn: Conn) -> None:
        self._update_bind_count(new_bind=False)
        if conn.bound:
            self.events.bind("closed", self._bind_info(conn), self.binds())

    @staticmethod
    def _bind_info(c: Conn) -> dict[str, Any]:
        return {"id": c.id, "mode": c.bound, "system_id": c.system_id, "peer": f"{c.addr[0]}:{c.addr[1]}"}

    def binds(self) -> list[dict[str, Any]]:
        """The current binds (for the control API / tests)."""
        return [self._bind_info(c) for c in self._all_conns() if c.bound]

    def _receiver(self, system_id: str | None = None) -> Conn | None:
        with self._lock:
            rx = [c for c in self._conns if c.can_receive and (system_id is None or c.system_id == system_id)]
            if not rx:
                return None
            self._rr = (self._rr + 1) % len(rx)
            return rx[self._rr]

    def drop_connections(self) -> int:
        """Close every connection abruptly (no unbind); returns how many were closed."""
        conns = self._all_conns()
        for c in conns:
            c.close()
        self._count("connections_dropped", len(conns))
        return len(conns)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + n

    def stats(self) -> dict[str, int]:
        with self._lock:
            s = dict(self._stats)
            s["mo_queued"] = sum(1 for j in self._jobs.values() if j.kind == "mo" and j.state in ("queued", "delivering"))
        s["mt_incomplete"] = self.reassembler.incomplete()
        s["mailbox_dropped"] = self.mailbox.dropped
        return s

    # ---------------------------------------------------------------- MT side
    def _new_message_id(self) -> str:
        """Unique ids (00000001, 00000002, ...), or with `message_id_cycle` N the same N again and again."""
        with self._lock:
            self._msg_counter += 1
            n = self._msg_counter
            cycle = self.behaviour.message_id_cycle
        if cycle:
            n = (n - 1) % cycle + 1
        return f"{n:08x}"

    def _on_submit(self, conn: Conn, seq: int, body: bytes) -> None:
        """A submit_sm from `conn`'s reader: decode, judge by the fault plan, answer now or later."""
        self._count("submits_received")
        try:
            sm, tlvs = pdu.decode_submit_sm(seq, body)
        except pdu.PduError as e:
            log.info("simsmsc conn %s bad submit_sm: %s", conn.id, e)
            self._count("submits_rejected")
            conn._resp(CommandId.SUBMIT_SM_RESP, Status.RINVMSGLEN, seq, b"\x00")
            return
        if not sm.destination_addr:
            self._count("submits_rejected")
            conn.send(pdu.encode_submit_sm_resp(seq, Status.RINVDSTADR, ""))
            return
        to = handset_number(sm.destination_addr, sm.dest_addr_ton, self.country_code)
        now = time.monotonic()
        v = self.faults.judge(conn.id, to, now)
        entry: dict[str, Any] = {"t": time.time(), "n": v.n, "conn": conn.id, "seq": seq, "to": to, "status": v.status,
                                 "addr": [sm.destination_addr, sm.dest_addr_ton, sm.dest_addr_npi]}
        with self._lock:
            self._submit_log.append(entry)
        if v.drop_before:
            entry["status"] = None
            self._count("submits_dropped")
            self.events.submit(entry)
            conn.drop(f"drop_after_submit={v.n}")
            return
        with self._lock:
            conn.outstanding += 1
            self._stats["max_outstanding_submits"] = max(self._stats["max_outstanding_submits"], conn.outstanding)
        if v.delay > 0:
            self._delayer.call_at(now + v.delay, lambda: self._answer_submit(conn, seq, sm, tlvs, v, entry))
        else:
            self._answer_submit(conn, seq, sm, tlvs, v, entry)

    def _answer_submit(self, conn: Conn, seq: int, sm: Any, tlvs: dict[int, bytes], v: Verdict, entry: dict[str, Any]) -> None:
        """Answer one submit_sm as judged; an accepted one is stored only if its resp is written."""
        with self._lock:
            # no longer outstanding from here: counted down BEFORE the resp is written, or the ESME's
            # next submit (sent on reading this resp) could be counted while this one still is
            conn.outstanding -= 1
        if v.status:
            counter = "submits_throttled" if v.status in TEMPORARY_STATUSES else "submits_rejected"
            answered = conn.answer(pdu.encode_submit_sm_resp(seq, v.status, ""), commit=lambda: self._count(counter))
        else:
            message_id = self._new_message_id()
            answered = conn.answer(pdu.encode_submit_sm_resp(seq, Status.ROK, message_id),
                                   commit=lambda: self._accept_submit(sm, tlvs, message_id, entry["to"]))
            if answered and sm.registered_delivery & 1 and self.send_receipts:
                payload = tlvs.get(Tag.MESSAGE_PAYLOAD, sm.short_message)
                if sm.esm_class & EsmClass.UDHI:
                    payload = codec.split_udh(payload)[0]
                self._queue_receipt(conn, sm, entry["to"], message_id, payload)
        if not answered:  # the connection went first: never answered, nothing stored, the ESME resends
            entry["status"] = None
            self._count("submits_dropped")
        if entry["status"] != 0:
            self.events.submit(entry)
        if v.drop_after:
            conn.drop(f"drop_after_resp={v.n}")

    def _accept_submit(self, sm: Any, tlvs: dict[int, bytes], message_id: str, to: str) -> None:
        """Into handset `to`'s mailbox (whole messages; parts wait in the reassembler). Runs before
        the resp is written."""
        self._count("mt_parts_received")
        payload = tlvs.get(Tag.MESSAGE_PAYLOAD, sm.short_message)
        segment: Segment | None = None
        if sm.esm_class & EsmClass.UDHI:
            payload, segment = codec.split_udh(payload)
        if segment is None:
            segment = codec.segment_from_tlvs(tlvs)
        if segment is not None and segment.total > 1:
            joined = self.reassembler.add(
                sm.source_addr, to, segment.ref, segment.total, segment.seq,
                sm.data_coding, payload, message_id,
            )
            if joined is not None:
                data, dc, ids = joined
                self._store_mt(sm.source_addr, to, dc, data, ids, bool(sm.registered_delivery & 1))
        else:
            self._store_mt(sm.source_addr, to, sm.data_coding, payload, [message_id], bool(sm.registered_delivery & 1))

    # ---------------------------------------------------------------- faults
    def set_faults(self, **kw: Any) -> dict[str, Any]:
        """Replace the fault plan (knobs not given are off; no arguments: behave) and restart its
        submit counting; returns the plan. Knobs: see ``POST /faults`` in `control`."""
        try:
            plan = self.faults.set(**kw)
        except FaultError as e:
            raise SimSmscError(str(e)) from None
        self.events.publish("faults", plan)
        return plan

    def submit_log(self) -> list[dict[str, Any]]:
        """Every submit_sm judged (latest SUBMITS_KEPT): {"t" (epoch s), "n", "conn", "seq", "to" (the
        handset), "addr" ([destination_addr, TON, NPI] as written), "status"}; status 0 accepted,
        non-zero the error answered, None never answered (dropped)."""
        with self._lock:
            return [dict(e) for e in self._submit_log]

    def _store_mt(self, source: str, dest: str, data_coding: int, data: bytes, ids: list[str], receipt_asked: bool) -> None:
        try:
            text = codec.decode_text(data_coding, data)
        except Exception as e:  # noqa: BLE001 - keep the message, show what went wrong
            text = f"<undecodable data_coding={data_coding}: {data.hex()} ({e})>"
        msg = StoredMessage(
            id=ids[0], sender=source, to=dest, text=text, parts=len(ids), data_coding=data_coding,
            received_at=time.time(), message_ids=ids,
        )
        self._count("mt_received")
        self.events.mt_stored(msg, receipt_asked)
        self.mailbox.put(msg)

    def _queue_receipt(self, conn: Conn, sm: Any, handset: str, message_id: str, payload: bytes) -> None:
        """A delivery receipt for MT `message_id` (submit `sm`, to `handset`), as the profile writes
        it: from the MT's destination address as the ESME wrote it, stat/err from `receipt_outcomes`,
        data_coding `receipt_data_coding` (the text is ASCII whatever it says), receipted_message_id
        + message_state TLVs only with `receipt_tlvs`."""
        b = self.behaviour
        mt_source, dc = sm.source_addr, sm.data_coding
        now = time.strftime("%y%m%d%H%M")
        try:
            sample = codec.decode_text(dc, payload)
        except Exception:  # noqa: BLE001
            sample = ""
        stat, err = b.receipt_outcome(handset)
        text = codec.format_receipt_text(message_id, stat, err, now, now, sample)
        tlvs: dict[int, bytes] = {}
        if b.receipt_tlvs:
            tlvs = {
                Tag.RECEIPTED_MESSAGE_ID: message_id.encode("ascii") + b"\x00",
                Tag.MESSAGE_STATE: bytes([profiles.MESSAGE_STATES.get(stat, MESSAGE_STATE_DELIVERED)]),
            }
        d = DeliverSm(
            sequence=0,
            service_type=b.service_type,
            source_addr_ton=sm.dest_addr_ton,
            source_addr_npi=sm.dest_addr_npi,
            source_addr=sm.destination_addr,
            destination_addr=mt_source,
            esm_class=EsmClass.DELIVERY_RECEIPT,
            data_coding=b.receipt_data_coding,
            short_message=text.encode("ascii", "replace") if isinstance(text, str) else bytes(text),
            tlvs=tlvs,
        )
        job = _MoJob(id=f"r{message_id}.{next(self._mo_ids)}", msisdn=handset, short_code=mt_source, parts=[d], kind="receipt")
        job.system_id = conn.system_id
        self.events.receipt_queued(job.id, message_id, handset, stat, err)
        self._enqueue(job, time.monotonic())

    # ---------------------------------------------------------------- MO side
    def _next_umr(self, msisdn: str) -> int:
        with self._lock:
            v = self._handset_umr.get(msisdn)
            v = self._rand.randrange(0x10000) if v is None else (v + 1) & 0xFFFF
            self._handset_umr[msisdn] = v
            return v

    def _next_ref(self, msisdn: str) -> int:
        with self._lock:
            v = self._handset_ref.get(msisdn)
            v = self._rand.randrange(0x10000) if v is None else (v + 1) & 0xFFFF
            self._handset_ref[msisdn] = v
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
        (`mo_status`). The profile shapes the PDUs (`profiles.shape_mo`); `carrier` ("deliver_sm" |
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
        ref = self._next_ref(msisdn)
        try:
            source, source_ton = mo_source(msisdn, self.behaviour.international_source, self.country_code)
            parts = build_mo_parts(
                source, short_code, text, split=split, ref=ref, umr=self._next_umr(msisdn), source_ton=source_ton,
                data_coding=None if data_coding is None else int(data_coding), extra_tlvs=extra_tlvs,
                naive_split=naive_split,
            )
        except PartsError as e:
            raise SimSmscError(str(e)) from None
        if carrier == "data_sm" and len(parts) > 1:
            raise SimSmscError("a data_sm MO carries one part: this text needs several")
        with self._lock:
            b = self.behaviour
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
        job = _MoJob(id=f"mo{next(self._mo_ids)}", msisdn=msisdn, short_code=short_code, parts=parts,
                     duplicate=duplicate, carrier=carrier, lost_resp=lost_resp, redeliver=redeliver)
        self._count("mo_injected")
        asked = {"split": split, "shuffle": shuffle, "duplicate": duplicate, "carrier": asked_carrier,
                 "naive_split": naive_split, "lost_resp": lost_resp,
                 "tlvs": {f"0x{int(t):04x}": bytes(v).hex() for t, v in (extra_tlvs or {}).items()}}
        options = {k: v for k, v in asked.items() if v}
        if not redeliver:
            options["redeliver"] = False
        if data_coding is not None:
            options["data_coding"] = int(data_coding)
        self.events.mo_queued(job, text, options)
        self._enqueue(job, time.monotonic())
        return {"id": job.id, "parts": len(parts), "user_message_reference": _umr_of(parts[0]), "carrier": carrier,
                "state": job.state}

    def mo_status(self, mo_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(mo_id)
            return job.to_dict() if job else None

    def wait_mo(self, mo_id: str, timeout: float = 5.0, states: tuple[str, ...] = ("delivered", "rejected")) -> dict[str, Any] | None:
        """Poll until the MO reaches one of `states` (test helper); returns its status."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.mo_status(mo_id)
            if st is None or st["state"] in states or time.monotonic() >= deadline:
                return st
            time.sleep(0.01)

    def inject_raw(self, data: bytes, *, command_id: int | None = None, status: int = 0, wait: float = 0.0) -> dict[str, Any]:
        """Send a raw PDU on a receiver-capable bind (for malformed-PDU tests).

        With `command_id`, `data` is the body: a header with that command_id, `status` and a fresh
        sequence is put in front. Without, `data` is written verbatim (header included).
        With `wait` > 0, waits that long for a resp with the same sequence and returns it as
        {"sequence", "resp_command_id", "resp_status"} (None values: no answer)."""
        conn = self._receiver()
        if conn is None:
            raise SimSmscError("no receiver-capable bind")
        seq = conn.next_seq() if command_id is not None else None
        if seq is None and len(data) >= 16:
            seq = struct.unpack(">I", data[12:16])[0]
        raw = pdu.encode_header(command_id, status, seq, data) if command_id is not None else bytes(data)
        w = Waiter()
        if wait > 0 and seq is not None:
            conn._waiters[seq] = w
        try:
            conn.send(raw)
            if wait > 0 and seq is not None:
                w.event.wait(wait)
        finally:
            if seq is not None and conn._waiters.get(seq) is w:
                del conn._waiters[seq]
        return {"sequence": seq, "resp_command_id": w.command_id, "resp_status": w.status}

    def send_partial(self, announced: int = 60000, octets: int = 40) -> dict[str, Any]:
        """On a receiver-capable bind: a deliver_sm header announcing `announced` octets, `octets`
        octets of body, then silence on that connection (`Conn.wedge`): nothing more is written or
        answered there and it stays open until the ESME closes it. MOs go to other binds (or wait
        for the ESME's next bind). Returns {"conn", "sequence", "announced", "octets"}."""
        conn = self._receiver()
        if conn is None:
            raise SimSmscError("no receiver-capable bind")
        seq = conn.next_seq()
        try:
            raw = profiles.partial_pdu(seq, announced, octets)
        except ValueError as e:
            raise SimSmscError(str(e)) from None
        if not conn.wedge(raw):
            raise SimSmscError(f"connection {conn.id} closed before the partial PDU was written")
        self._count("partials_sent")
        return {"conn": conn.id, "sequence": seq, "announced": announced, "octets": octets}

    # ---------------------------------------------------------------- delivery scheduler
    def _enqueue(self, job: _MoJob, due: float) -> None:
        with self._sched_cond:
            if job.id not in self._jobs and len(self._jobs) >= JOBS_KEPT:
                self._forget_finished()
            self._jobs[job.id] = job
            heapq.heappush(self._sched, (due, next(self._sched_seq), job))
            self._sched_cond.notify()

    def _take_job(self) -> _MoJob | None:
        """Next due job whose handset has no other job in flight (keeps one handset's MOs in order)."""
        with self._sched_cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                skipped: list[tuple[float, int, _MoJob]] = []
                found: _MoJob | None = None
                next_due: float | None = None
                while self._sched:
                    due, _n, job = self._sched[0]
                    if due > now:
                        next_due = due
                        break
                    item = heapq.heappop(self._sched)
                    if job.order_key in self._busy_keys:
                        skipped.append(item)
                        continue
                    found = job
                    break
                for item in skipped:
                    heapq.heappush(self._sched, item)
                if found is not None:
                    self._busy_keys.add(found.order_key)
                    return found
                self._sched_cond.wait(1.0 if next_due is None else min(1.0, max(0.001, next_due - now)))
            return None

    def _forget_finished(self) -> None:
        for jid in [j.id for j in self._jobs.values() if j.state in ("delivered", "rejected", "cancelled")][: JOBS_KEPT // 4]:
            del self._jobs[jid]

    def _release(self, job: _MoJob) -> None:
        with self._sched_cond:
            self._busy_keys.discard(job.order_key)
            self._sched_cond.notify_all()
        self.events.job_changed(job)

    def _worker(self) -> None:
        while not self._stopping.is_set():
            job = self._take_job()
            if job is None:
                return
            try:
                self._deliver(job)
            except Exception:  # noqa: BLE001
                log.exception("simsmsc delivery of %s crashed", job.id)
                job.state, job.last_error = "rejected", "simulator error"
            finally:
                self._release(job)

    def _retry_later(self, job: _MoJob, reason: str, status: int | None, waiting_bind: bool = False) -> None:
        job.state = "queued"
        job.last_status = status
        job.last_error = reason
        job.waiting_bind = waiting_bind
        if not waiting_bind:  # a deliver_sm went out and failed: the next try is a redelivery
            job.redeliveries += 1
            if job.kind == "mo":
                self._count("mo_redelivered")
        self._enqueue(job, time.monotonic() + self.redeliver_seconds)

    def _deliver(self, job: _MoJob) -> None:
        job.state = "delivering"
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
            w = conn.send_deliver(part, self.response_timeout, job.carrier, lose=lose)
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
                    w2 = conn.send_deliver(part, self.response_timeout, job.carrier)
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
