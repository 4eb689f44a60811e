"""One accepted SMPP connection of the simulated SMSC: binds, enquire_link, unbind, deliver_sm sent
and answered, drops and silence (the reader thread and the write lock are `connection`'s).

The connection answers binds, enquire_link, unbind and unknown commands itself and hands
submit_sm to its `SimSmsc`; deliver_sm it sends (`send_deliver`) wait for their resp through
`SmppWaiter`s keyed by sequence number.

Sequence numbers follow the simulator's profile (`profiles.Behaviour.sequence_start` / `sequence_max`:
a field SMSC starts high and wraps at 0xFFFFFFFF, not at the spec's 0x7FFFFFFF). MOs are encoded by
`profiles.encode_mo` (deliver_sm or data_sm, service_type written whole).

`wedge` (silence after a partial PDU) and `drop` (FIN, nothing more answered) are `connection`'s;
here a dropped bind also counts ``connections_dropped`` and a submit_sm read while dropping
counts as dropped.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from smsbot import pdu
from smsbot.messages import CommandId, DeliverSm, Status

from . import profiles
from .connection import Connection, Waiter

if TYPE_CHECKING:
    from .smsc import SimSmsc

log = logging.getLogger("smsbot.simulator")

RESP_BIT = 0x80000000
BIND_COMMANDS = {
    CommandId.BIND_TRANSCEIVER: "transceiver",
    CommandId.BIND_RECEIVER: "receiver",
    CommandId.BIND_TRANSMITTER: "transmitter",
}
# requests we know but do not serve: answered with their resp and ESME_RINVCMDID
_UNSERVED_REQUESTS = {CommandId.QUERY_SM, CommandId.DATA_SM}


class SmppWaiter(Waiter):
    __slots__ = ("command_id", "status", "raw", "lose")

    def __init__(self, lose: bool = False) -> None:
        super().__init__()
        self.lose = lose  # the resp is "lost": the link dies as it arrives, nothing after it is read
        self.command_id: int | None = None
        self.status: int | None = None  # None: no answer (timeout or connection lost)
        self.raw: bytes = b""  # the PDU written (send_deliver)


class SmppConn(Connection):
    """One accepted SMPP connection: a reader thread, serialized writes, per-bind sequence numbers."""

    label = "simsmsc"
    tick = 0.25
    framing_error = pdu.FramingError
    _ids = itertools.count(1)

    def __init__(self, sim: SimSmsc, sock: socket.socket, addr: Any, stopping: threading.Event):
        super().__init__(sock, addr, pdu.Framer(), stopping)
        self.sim = sim
        self.bound: str | None = None  # "transceiver" | "receiver" | "transmitter"
        self.ready = False  # bind_resp sent
        self.system_id = ""
        self._slock = threading.Lock()
        self._seq: int | None = None  # last sequence number used (None: none yet)
        self.outstanding = 0  # submit_sm received whose resp is not sent yet (`submits` keeps it)
        self._last_enquire = 0.0

    # -- writing
    @property
    def can_receive(self) -> bool:
        return (self.ready and self.bound in ("transceiver", "receiver") and not self.closed.is_set()
                and not self.dropping and not self.wedged)

    def next_seq(self) -> int:
        b = self.sim.behaviour
        with self._slock:
            if self._seq is None:
                seq = b.sequence_start
            else:
                seq = self._seq + 1
                if seq > b.sequence_max or seq > profiles.SEQ_WIRE_MAX:
                    seq = 1
            self._seq = seq
            return seq

    def send(self, data: bytes) -> bool:
        """Write `data` unless the connection is closed, dropping or wedged (False then)."""
        return self._write(data)

    def answer(self, data: bytes, commit: Callable[[], None] | None = None) -> bool:
        """Write a resp unless the connection is dropping or closed (False then). `commit` (storing
        the message) runs just before the write under the lock `drop()` takes, so a drop never falls
        between storing a submit_sm and writing its resp."""
        return self._write(data, commit)

    def send_deliver(self, d: DeliverSm, timeout: float, carrier: str = "deliver_sm", lose: bool = False) -> SmppWaiter:
        """Send `d` as a deliver_sm (or a data_sm) and wait up to `timeout` for its resp. `lose`: the
        resp is lost with the link — it is dropped the moment the resp arrives, and whatever the
        ESME wrote after the resp (an enquire_link, say) is never read, as on a real dying link."""
        d.sequence = self.next_seq()
        w = SmppWaiter(lose)
        w.raw = profiles.encode_mo(d, d.sequence, carrier)
        return self._exchange(d.sequence, w, w.raw, timeout)

    def request(self, raw: bytes, sequence: int | None, wait: float) -> SmppWaiter:
        """Write the PDU `raw`; with `wait` > 0 and its `sequence` known, wait that long for the
        resp with that sequence (`inject_raw`)."""
        w = SmppWaiter()
        if wait > 0 and sequence is not None:
            return self._exchange(sequence, w, raw, wait)
        self.send(raw)
        return w

    def drop(self, reason: str) -> bool:
        if not super().drop(reason):
            return False
        self.sim.count("connections_dropped")
        return True

    def _closed(self) -> None:
        self.sim.conn_closed(self)

    # -- reading
    def _framing_failed(self, error: pdu.FramingError) -> None:
        for frame in error.pdus:  # the good ones before the bad header
            self._handle(frame)
        log.warning("simsmsc conn %s framing error: %s", self.id, error)
        self.sim.count("generic_nacks_sent")
        self.send(pdu.encode_header(CommandId.GENERIC_NACK, Status.RINVCMDLEN, 0))

    def _idle(self) -> None:
        if self._quiet_idle():
            return
        now = time.monotonic()
        interval = self.sim.enquire_link_interval
        if self.bound and now - self.last_rx >= interval and now - self._last_enquire >= interval:
            self._last_enquire = now
            self.sim.count("enquire_links_sent")
            self.send(pdu.encode_header(CommandId.ENQUIRE_LINK, 0, self.next_seq()))

    def resp(self, command_id: int, status: int, seq: int, body: bytes = b"") -> None:
        self.send(pdu.encode_header(command_id, status, seq, body))

    def _handle(self, frame: tuple[int, int, int, bytes]) -> None:
        command_id, status, seq, body = frame
        sim = self.sim
        if self.wedged:  # silence: read, never answered
            return
        if self.dropping:  # read, never answered
            if command_id == CommandId.SUBMIT_SM:
                sim.count("submits_received")
                sim.count("submits_dropped")
            return
        if command_id & RESP_BIT:
            w = self._answered(seq)
            if isinstance(w, SmppWaiter):
                if w.lose:
                    self.drop("resp lost")
                w.command_id, w.status = command_id, status
                w.event.set()
            elif command_id == CommandId.UNBIND_RESP:
                self.close()
            return
        if command_id in BIND_COMMANDS:
            self._bind(command_id, seq, body)
        elif command_id == CommandId.ENQUIRE_LINK:
            sim.count("enquire_links_received")
            self.resp(CommandId.ENQUIRE_LINK_RESP, 0, seq)
        elif command_id == CommandId.UNBIND:
            sim.count("unbinds_received")
            self.resp(CommandId.UNBIND_RESP, 0, seq)
            self.close()
        elif command_id == CommandId.SUBMIT_SM:
            if self.bound not in ("transceiver", "transmitter"):
                sim.count("submits_received")
                sim.count("submits_rejected")
                self.resp(CommandId.SUBMIT_SM_RESP, Status.RINVBNDSTS, seq, b"\x00")
                return
            sim.on_submit(self, seq, body)
        elif command_id in _UNSERVED_REQUESTS:
            self.resp(command_id | RESP_BIT, Status.RINVCMDID, seq, b"\x00" if command_id != CommandId.QUERY_SM else b"")
        else:
            sim.count("generic_nacks_sent")
            self.resp(CommandId.GENERIC_NACK, Status.RINVCMDID, seq)

    def _bind(self, command_id: int, seq: int, body: bytes) -> None:
        sim = self.sim
        resp_id = command_id | RESP_BIT
        if self.bound:
            self.send(pdu.encode_bind_resp(resp_id, Status.RALYBND, seq, sim.name))
            return
        try:
            b = pdu.decode_bind(body)
        except pdu.PduError as e:
            log.info("simsmsc conn %s bad bind: %s", self.id, e)
            sim.count("bind_failures")
            self.send(pdu.encode_bind_resp(resp_id, Status.RBINDFAIL, seq, sim.name))
            return
        if b.get("system_id") != sim.system_id:
            st = Status.RINVSYSID
        elif b.get("password") != sim.password:
            st = Status.RINVPASWD
        else:
            st = Status.ROK
        if st != Status.ROK:
            log.info("simsmsc conn %s bind refused (%s)", self.id, Status(st).name)
            sim.count("bind_failures")
            self.send(pdu.encode_bind_resp(resp_id, st, seq, sim.name))
            return
        self.system_id = b["system_id"]
        self.bound = BIND_COMMANDS[command_id]
        sim.count_binds(new_bind=True)
        # ready and the bind_resp together under the write lock: a deliver_sm can be queued for
        # this bind at once, yet is written only after the bind_resp
        if not self._write(pdu.encode_bind_resp(resp_id, Status.ROK, seq, sim.name), commit=self._mark_ready):
            return
        log.info("simsmsc conn %s bound as %s (%s)", self.id, self.bound, self.system_id)
        sim.on_bound(self)

    def _mark_ready(self) -> None:
        self.ready = True
