"""SimSmsc: a simulated SMSC (SMPP 3.4 server) for testing smsbot, plus its HTTP control API.

What it does, like a real SMSC:
- accepts bind_transceiver / bind_receiver / bind_transmitter with the configured system_id and
  password (ESME_RINVSYSID / ESME_RINVPASWD otherwise); several binds at once;
- answers enquire_link and unbind, sends generic_nack for unknown commands, sends its own
  enquire_link when a bind is idle (`smpp_conn`);
- takes submit_sm (→ submit_sm_resp with a unique hex message_id), joins concatenated parts
  (UDH IEI 0x00/0x08 or sar_* TLVs) into whole messages and keeps them in a per-MSISDN mailbox
  until a handset picks them up; sends a delivery receipt when registered_delivery asks for one
  (`submits`);
- delivers MOs injected by handsets (`inject_mo`) as deliver_sm, round-robin over the
  receiver-capable binds, and redelivers on temporary errors / timeouts / no bind (`deliveries`,
  run by the `scheduler`);
- behaves like a tidy SMSC (profile ``default``) or like SMSCs met in the field (profile
  ``field``: no message references, an 8-octet service_type, sequence numbers above 0x7FFFFFFF,
  message_payload with a trailing NUL, data_sm MOs, receipts with data_coding 8 and no TLVs, reused
  message ids), each behaviour a flag (`set_profile`, ``POST /profile``; see `profiles`); sends a
  partial PDU and falls silent on request (`send_partial`);
- serves SMPP over TLS when given an `ssl.SSLContext` (`tls`: each connection's TLS is terminated
  by one proxy thread, so the SSL object is only ever used by one thread);
- misbehaves on request (`set_faults`, see `faults` and ``POST /faults`` in `control`): slow
  submit_sm_resp, throttling (patterns or a max TPS per bind), permanent rejects per destination,
  connections dropped with a submit_sm unanswered or right after a resp.

This module assembles those parts and owns what is SMPP's: the settings it is built from, the
names of its counters (`COUNTERS`), its binds (who is bound, which can receive), TLS in front of a
connection, raw PDUs and which profiles it speaks (`profiles`). The lifecycle, the switching of
profiles, the fault plan, the counting and the connections held are `base.Simulator`'s, shared
with the CMPP sibling (`ismg`). Threads:
one accept thread (`server.Listener`), one reader per connection, the delivery workers, the thread
of delayed resps, a TLS proxy per TLS connection and the HTTP control server thread (`control`).
`stop()` ends and joins them all.
"""

from __future__ import annotations

import socket
import ssl
import struct
from functools import partial
from typing import Any

from smsbot import pdu
from smsbot.config import BillingSettings, Settings, SimulatorSettings, SmscSettings
from smsbot.msisdn import DEFAULT_COUNTRY_CODE

from . import profiles, tls
from .base import Simulator
from .deliveries import Deliveries
from .errors import SimSmscError
from .faults import Faults
from .smpp_conn import SmppConn
from .submits import Submits

COUNTERS = (
    "binds", "binds_total", "bind_failures", "mo_injected", "mo_delivered", "mo_redelivered",
    "mo_rejected", "mo_duplicates_sent", "mo_parts_sent", "mt_received", "mt_parts_received",
    "receipts_sent", "enquire_links_sent", "generic_nacks_sent", "connections_dropped",
    "submits_received", "submits_throttled", "submits_rejected", "submits_dropped",
    "max_outstanding_submits", "enquire_links_received", "unbinds_received",
    "mo_data_sm_sent", "partials_sent", "tls_handshakes", "tls_handshake_failures",
)


class SimSmsc(Simulator):
    """The simulated SMSC. `start()` / `stop()` for in-process use, `serve_forever()` for the CLI.

    Ports given as 0 are picked by the OS; the actual ones are `smpp_port` / `control_port` after
    `start()`. `control_url` is the control API's base URL. A new profile (`set_profile`) applies
    to what is sent from then on: a bind keeps its sequence counter (`sequence_start` applies to
    new binds).
    """

    name = "simsmsc"
    protocol = "smpp"
    make_behaviour = staticmethod(profiles.make_behaviour)
    partial_pdu = staticmethod(profiles.partial_pdu)

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
        super().__init__(
            host=host if host is not None else settings.host,
            wire_port=smpp_port if smpp_port is not None else settings.smpp_port,
            control=control,
            control_port=control_port if control_port is not None else settings.control_port,
            response_timeout=response_timeout, country_code=country_code, profile=profile, flags=flags or {},
            faults=Faults(), counters=COUNTERS,
            timezone=BillingSettings().timezone,  # the zone the web page shows times in (billing.timezone)
        )
        self.settings = settings
        self.system_id = smsc.system_id
        self.password = smsc.password
        self.send_receipts = settings.send_receipts
        self.enquire_link_interval = enquire_link_interval
        self.ssl_context = ssl_context
        self._deliveries = Deliveries(
            receiver=self._receiver, behaviour=self._behaviour, events=self.events, count=self.count,
            stopping=self._stopping, country_code=country_code, response_timeout=response_timeout,
            redeliver_seconds=settings.redeliver_seconds, workers=workers,
        )
        self._scheduler = self._deliveries.scheduler
        self._submits = Submits(
            faults=self.faults, mailbox=self.mailbox, reassembler=self.reassembler, events=self.events,
            deliveries=self._deliveries, delayer=self._delayer, behaviour=self._behaviour, count=self.count,
            raise_to=self._counters.raise_to, country_code=country_code, send_receipts=self.send_receipts,
        )

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

    @property
    def smpp_port(self) -> int:
        """The SMPP port (the control API names it ``smpp_port``)."""
        return self.wire_port

    # ---------------------------------------------------------------- profile
    def _profile_changed(self) -> None:
        self._deliveries.profile_changed()

    def restart_message_ids(self) -> None:
        """Message ids start again from the first one (as after an SMSC restart): the next MTs get
        ids earlier MTs had."""
        self._submits.restart_message_ids()

    def _behaviour(self) -> profiles.Behaviour:
        return self.behaviour

    def _listening_on(self) -> str:
        return f"smpp{' (TLS)' if self.ssl_context else ''} {self.host}:{self.smpp_port}"

    # ---------------------------------------------------------------- connections
    def _accepted(self, sock: socket.socket, addr: Any) -> bool:
        if self.ssl_context is not None:
            serve_tls = partial(
                tls.proxy, sock, addr, self.ssl_context, serve=partial(self._serve, addr=addr),
                still_served=self._conns.holds_open, stopping=self._stopping, count=self.count,
            )
            self._spawn(serve_tls, f"simsmsc-tls-{addr[1]}")
            return True
        return self._serve(sock, addr)

    def _serve(self, sock: socket.socket, addr: Any) -> bool:
        """Serve SMPP on `sock` (accepted, or the plain end of a TLS proxy)."""
        return self._conns.add(SmppConn(self, sock, addr, self._stopping))

    def count_binds(self, new_bind: bool = False) -> None:
        """Recount the binds open (and count one more bind made with `new_bind`)."""
        with self._lock:
            if new_bind:
                self._counters.add("binds_total")
            self._counters.set("binds", len(self._conns.open(self._is_bound)))

    def on_bound(self, conn: SmppConn) -> None:
        """`conn` is bound (its bind_resp written): jobs parked for lack of a bind go now."""
        self.events.bind("opened", self._bind_info(conn), self.binds())
        if conn.can_receive:
            self._scheduler.wake_parked()

    def conn_closed(self, conn: SmppConn) -> None:
        self.count_binds()
        if conn.bound:
            self.events.bind("closed", self._bind_info(conn), self.binds())

    def on_submit(self, conn: SmppConn, seq: int, body: bytes) -> None:
        """A submit_sm from a transmitter-capable bind (`submits`)."""
        self._submits.on_submit(conn, seq, body)

    @staticmethod
    def _is_bound(c: SmppConn) -> bool:
        return c.bound is not None

    def _bind_info(self, c: SmppConn) -> dict[str, Any]:
        return {"id": c.id, "mode": c.bound, "system_id": c.system_id, "peer": f"{c.addr[0]}:{c.addr[1]}"}

    def _receiver(self, system_id: str | None = None) -> SmppConn | None:
        return self._conns.pick(lambda c: c.can_receive and (system_id is None or c.system_id == system_id))

    def _gauges(self) -> dict[str, int]:
        return {**super()._gauges(), "mailbox_dropped": self.mailbox.dropped}

    # ---------------------------------------------------------------- MT side
    def submit_log(self) -> list[dict[str, Any]]:
        """Every submit_sm judged: see `Submits.log`."""
        return self._submits.log()

    # ---------------------------------------------------------------- MO side
    def inject_mo(self, msisdn: str, short_code: str, text: str, **options: Any) -> dict[str, Any]:
        """Queue an MO from handset `msisdn` to `short_code`; returns {"id", "parts",
        "user_message_reference", "carrier", "state"} at once. Options (split, shuffle, duplicate,
        carrier, lost_resp, ...): see `Deliveries.inject_mo`."""
        return self._deliveries.inject_mo(msisdn, short_code, text, **options)

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
        w = conn.request(raw, seq, wait)
        return {"sequence": seq, "resp_command_id": w.command_id, "resp_status": w.status}

    def send_partial(self, announced: int = 60000, octets: int = 40) -> dict[str, Any]:
        """On a receiver-capable bind: a deliver_sm header announcing `announced` octets, `octets`
        octets of body, then silence on that connection (`Connection.wedge`): nothing more is written or
        answered there and it stays open until the ESME closes it. MOs go to other binds (or wait
        for the ESME's next bind). Returns {"conn", "sequence", "announced", "octets"}."""
        return self._send_partial(self._receiver(), "no receiver-capable bind", announced, octets)
