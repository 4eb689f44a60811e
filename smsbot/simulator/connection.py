"""One accepted SMPP connection of the simulated SMSC: reader thread, serialized writes, binds.

The connection answers binds, enquire_link, unbind and unknown commands itself and hands
submit_sm to its `SimSmsc`; deliver_sm it sends (`send_deliver`) wait for their resp through
`_Waiter`s keyed by sequence number. Writes from any thread go through one lock.

Sequence numbers follow the simulator's profile (`profiles.Behaviour.sequence_start` / `sequence_max`:
a field SMSC starts high and wraps at 0xFFFFFFFF, not at the spec's 0x7FFFFFFF). MOs are encoded by
`profiles.encode_mo` (deliver_sm or data_sm, service_type written whole).

`wedge(data)` writes `data` (a partial PDU) and then falls silent: nothing more is written or
answered on that connection, no enquire_link goes out, what the ESME sends is read and discarded,
and the TCP connection stays open until the ESME closes it.

`drop()` (fault injection) ends the connection "abruptly" for SMPP (no unbind, nothing more is
answered or stored) but with a FIN after what was already written, never a TCP reset: a resp sent
before the drop reaches the ESME, whatever it sent after is read and discarded unanswered.
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
DROP_LINGER_S = 2.0  # after drop(): how long to wait for the ESME to close its side


class Waiter:
    __slots__ = ("event", "command_id", "status", "raw", "lose")

    def __init__(self, lose: bool = False) -> None:
        self.lose = lose  # the resp is "lost": the link dies as it arrives, nothing after it is read
        self.event = threading.Event()
        self.command_id: int | None = None
        self.status: int | None = None  # None: no answer (timeout or connection lost)
        self.raw: bytes = b""  # the PDU written (send_deliver)


class Conn:
    """One accepted SMPP connection: a reader thread, serialized writes, per-bind sequence numbers."""

    _ids = itertools.count(1)

    def __init__(self, sim: SimSmsc, sock: socket.socket, addr: Any):
        self.sim = sim
        self.sock = sock
        self.addr = addr
        self.id = next(self._ids)
        self.bound: str | None = None  # "transceiver" | "receiver" | "transmitter"
        self.ready = False  # bind_resp sent
        self.system_id = ""
        self._wlock = threading.Lock()
        self._slock = threading.Lock()
        self._seq: int | None = None  # last sequence number used (None: none yet)
        self._waiters: dict[int, Waiter] = {}
        self.closed = threading.Event()
        self.dropping = False  # drop() was called: read and discard until the ESME closes
        self.wedged = False  # wedge() was called: silent, reads discarded, stays open
        self._drop_deadline = 0.0
        self.outstanding = 0  # submit_sm received whose resp is not sent yet (SimSmsc keeps it)
        self.last_rx = time.monotonic()
        self._last_enquire = 0.0
        self.thread = threading.Thread(target=self._run, name=f"simsmsc-conn-{self.id}", daemon=True)

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
        if self.closed.is_set() or self.dropping or self.wedged:
            return False
        try:
            with self._wlock:
                self.sock.sendall(data)
            return True
        except OSError as e:
            log.info("simsmsc conn %s write failed: %s", self.id, e)
            self.close()
            return False

    def answer(self, data: bytes, commit: Callable[[], None] | None = None) -> bool:
        """Write a resp unless the connection is dropping or closed (False then). `commit` (storing
        the message) runs just before the write under the lock `drop()` takes, so a drop never falls
        between storing a submit_sm and writing its resp."""
        with self._wlock:
            if self.closed.is_set() or self.dropping or self.wedged:
                return False
            if commit is not None:
                commit()
            try:
                self.sock.sendall(data)
                return True
            except OSError as e:
                log.info("simsmsc conn %s write failed: %s", self.id, e)
        self.close()
        return False

    def send_deliver(self, d: DeliverSm, timeout: float, carrier: str = "deliver_sm", lose: bool = False) -> Waiter:
        """Send `d` as a deliver_sm (or a data_sm) and wait up to `timeout` for its resp. `lose`: the
        resp is lost with the link — it is dropped the moment the resp arrives, and whatever the
        ESME wrote after the resp (an enquire_link, say) is never read, as on a real dying link."""
        d.sequence = self.next_seq()
        w = Waiter(lose)
        w.raw = profiles.encode_mo(d, d.sequence, carrier)
        self._waiters[d.sequence] = w
        try:
            if self.send(w.raw):
                w.event.wait(timeout)
        finally:
            self._waiters.pop(d.sequence, None)
        return w

    def wedge(self, data: bytes) -> bool:
        """Write `data` (a partial PDU), then fall silent (see the module doc). False when the
        connection is already closed, dropping or wedged."""
        with self._wlock:
            if self.closed.is_set() or self.dropping or self.wedged:
                return False
            try:
                self.sock.sendall(data)
            except OSError as e:
                log.info("simsmsc conn %s write failed: %s", self.id, e)
                ok = False
            else:
                ok = True
            self.wedged = True
        log.info("simsmsc conn %s wedged after a partial PDU of %d octets", self.id, len(data))
        for w in list(self._waiters.values()):
            w.event.set()
        if not ok:
            self.close()
        return ok

    def drop(self, reason: str) -> None:
        """Stop answering and send FIN (see the module doc); the reader closes once the ESME has."""
        with self._wlock:  # after any write in progress, so that write is not cut
            if self.dropping or self.closed.is_set():
                return
            self.dropping = True
            self._drop_deadline = time.monotonic() + DROP_LINGER_S
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        log.info("simsmsc conn %s dropped (%s)", self.id, reason)
        self.sim._count("connections_dropped")
        for w in list(self._waiters.values()):
            w.event.set()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for w in list(self._waiters.values()):
            w.event.set()
        self.sim._conn_closed(self)

    # -- reading
    def _run(self) -> None:
        framer = pdu.Framer()
        self.sock.settimeout(0.25)
        try:
            while not self.closed.is_set() and not self.sim._stopping.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    self._idle()
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.last_rx = time.monotonic()
                try:
                    frames = framer.feed(data)
                except pdu.FramingError as e:
                    for command_id, status, seq, body in e.pdus:  # the good ones before the bad header
                        self._handle(command_id, status, seq, body)
                    log.warning("simsmsc conn %s framing error: %s", self.id, e)
                    self.sim._count("generic_nacks_sent")
                    self.send(pdu.encode_header(CommandId.GENERIC_NACK, Status.RINVCMDLEN, 0))
                    break
                for command_id, status, seq, body in frames:
                    self._handle(command_id, status, seq, body)
                    if self.closed.is_set():
                        break
        except Exception:  # noqa: BLE001 - a simulator bug must not go unnoticed, nor kill the process
            log.exception("simsmsc conn %s reader crashed", self.id)
        finally:
            self.close()

    def _idle(self) -> None:
        now = time.monotonic()
        if self.dropping:
            if now >= self._drop_deadline:
                self.close()
            return
        if self.wedged:
            return
        interval = self.sim.enquire_link_interval
        if self.bound and now - self.last_rx >= interval and now - self._last_enquire >= interval:
            self._last_enquire = now
            self.sim._count("enquire_links_sent")
            self.send(pdu.encode_header(CommandId.ENQUIRE_LINK, 0, self.next_seq()))

    def _resp(self, command_id: int, status: int, seq: int, body: bytes = b"") -> None:
        self.send(pdu.encode_header(command_id, status, seq, body))

    def _handle(self, command_id: int, status: int, seq: int, body: bytes) -> None:
        sim = self.sim
        if self.wedged:  # silence: read, never answered
            return
        if self.dropping:  # read, never answered
            if command_id == CommandId.SUBMIT_SM:
                sim._count("submits_received")
                sim._count("submits_dropped")
            return
        if command_id & RESP_BIT:
            w = self._waiters.get(seq)
            if w is not None:
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
            sim._count("enquire_links_received")
            self._resp(CommandId.ENQUIRE_LINK_RESP, 0, seq)
        elif command_id == CommandId.UNBIND:
            sim._count("unbinds_received")
            self._resp(CommandId.UNBIND_RESP, 0, seq)
            self.close()
        elif command_id == CommandId.SUBMIT_SM:
            if self.bound not in ("transceiver", "transmitter"):
                sim._count("submits_received")
                sim._count("submits_rejected")
                self._resp(CommandId.SUBMIT_SM_RESP, Status.RINVBNDSTS, seq, b"\x00")
                return
            sim._on_submit(self, seq, body)
        elif command_id in _UNSERVED_REQUESTS:
            self._resp(command_id | RESP_BIT, Status.RINVCMDID, seq, b"\x00" if command_id != CommandId.QUERY_SM else b"")
        else:
            sim._count("generic_nacks_sent")
            self._resp(CommandId.GENERIC_NACK, Status.RINVCMDID, seq)

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
            sim._count("bind_failures")
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
            sim._count("bind_failures")
            self.send(pdu.encode_bind_resp(resp_id, st, seq, sim.name))
            return
        self.system_id = b["system_id"]
        self.bound = BIND_COMMANDS[command_id]
        sim._update_bind_count()
        resp = pdu.encode_bind_resp(resp_id, Status.ROK, seq, sim.name)
        try:
            with self._wlock:
                # ready and the bind_resp together under the write lock: a deliver_sm can be queued
                # for this bind at once, yet is written only after the bind_resp
                self.ready = True
                self.sock.sendall(resp)
        except OSError:
            self.close()
            return
        log.info("simsmsc conn %s bound as %s (%s)", self.id, self.bound, self.system_id)
        sim._on_bound(self)
