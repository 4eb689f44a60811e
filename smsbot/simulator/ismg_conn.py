"""One accepted CMPP connection of the simulated ISMG: reader thread, serialized writes, CONNECT.

The connection authenticates the SP itself (`SimIsmg.judge_connect` says the status) and answers
ACTIVE_TEST and TERMINATE; SUBMITs go to its `SimIsmg`. DELIVERs it sends (`send_deliver`) wait
for their DELIVER_RESP through a `Waiter` keyed by Sequence_Id. Writes from any thread go through
one lock. Before a successful CONNECT anything but a CONNECT closes the connection, as gateways do;
a refused CONNECT is answered (AuthenticatorISMG all zeros) and the connection closed.

When nothing has arrived for the ISMG's `active_test_interval` it sends an ACTIVE_TEST; one left
unanswered for `response_timeout` closes the connection (`active_test()` sends one at once).
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from smsbot import cmpp
from smsbot.cmpp import auth
from smsbot.cmpp.constants import RESP_BIT, CommandId, ConnectStatus

if TYPE_CHECKING:
    from .ismg import SimIsmg

log = logging.getLogger("smsbot.simulator")


class Waiter:
    """The answer to one PDU we sent: set when its resp arrives or the connection goes."""

    __slots__ = ("event", "pdu")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.pdu: cmpp.Pdu | None = None  # None: no answer (timeout or connection lost)


class IsmgConn:
    _ids = itertools.count(1)

    def __init__(self, ismg: SimIsmg, sock: socket.socket, addr: Any):
        self.ismg = ismg
        self.sock = sock
        self.addr = addr
        self.id = next(self._ids)
        self.version = 0  # the version agreed at CONNECT (0: not connected)
        self._wlock = threading.Lock()
        self._slock = threading.Lock()
        self._seq = 0
        self._waiters: dict[int, Waiter] = {}
        self.closed = threading.Event()
        self.last_rx = time.monotonic()
        self._active_test: tuple[int, float] | None = None  # (sequence, sent at) of ours unanswered
        self.thread = threading.Thread(target=self._run, name=f"simismg-conn-{self.id}", daemon=True)

    @property
    def connected(self) -> bool:
        return bool(self.version) and not self.closed.is_set()

    def next_seq(self) -> int:
        with self._slock:
            self._seq = 1 if self._seq >= 0xFFFFFFFF else self._seq + 1
            return self._seq

    # -- writing
    def send(self, pdu: cmpp.Pdu, sequence: int | None = None) -> int | None:
        """Write `pdu` (a fresh Sequence_Id unless given); the sequence used, None when closed."""
        seq = self.next_seq() if sequence is None else sequence
        data = cmpp.encode(pdu, seq, self.version or cmpp.Version.V30)
        if self.closed.is_set():
            return None
        try:
            with self._wlock:
                self.sock.sendall(data)
        except OSError as e:
            log.info("simismg conn %s write failed: %s", self.id, e)
            self.close()
            return None
        return seq

    def send_deliver(self, d: cmpp.Deliver, timeout: float) -> Waiter:
        """Send `d` and wait up to `timeout` for its DELIVER_RESP."""
        w = Waiter()
        seq = self.next_seq()
        self._waiters[seq] = w
        try:
            if self.send(d, seq) is not None:
                w.event.wait(timeout)
        finally:
            self._waiters.pop(seq, None)
        return w

    def active_test(self) -> int | None:
        """Send an ACTIVE_TEST now (unless one is unanswered); its sequence."""
        if not self.connected or self._active_test is not None:
            return None
        seq = self.send(cmpp.ActiveTest())
        if seq is not None:
            self._active_test = (seq, time.monotonic())
            self.ismg.count("active_tests_sent")
        return seq

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for how in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                how()
            except OSError:
                pass
        for w in list(self._waiters.values()):
            w.event.set()
        self.ismg.conn_closed(self)

    # -- reading
    def _run(self) -> None:
        framer = cmpp.Framer()
        self.sock.settimeout(0.1)
        try:
            while not self.closed.is_set() and not self.ismg.stopping:
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
                except cmpp.FramingError as e:
                    frames = e.frames
                    log.warning("simismg conn %s framing error: %s", self.id, e)
                    self.ismg.count("framing_errors")
                    for frame in frames:
                        self._handle(frame)
                    break
                for frame in frames:
                    self._handle(frame)
                    if self.closed.is_set():
                        break
        except Exception:  # noqa: BLE001 - a simulator bug must not go unnoticed, nor kill the process
            log.exception("simismg conn %s reader crashed", self.id)
        finally:
            self.close()

    def _idle(self) -> None:
        now = time.monotonic()
        if self._active_test is not None:
            if now - self._active_test[1] > self.ismg.response_timeout:
                log.info("simismg conn %s: ACTIVE_TEST unanswered, closing", self.id)
                self.ismg.count("active_tests_unanswered")
                self.close()
        elif self.connected and now - self.last_rx >= self.ismg.active_test_interval:
            self.active_test()

    def _handle(self, frame: cmpp.Frame) -> None:
        ismg = self.ismg
        if not self.version:
            if frame.command_id != CommandId.CONNECT:
                log.info("simismg conn %s: command 0x%08x before CONNECT, closing", self.id, frame.command_id)
                self.close()
                return
            self._connect(frame)
            return
        try:
            pdu = cmpp.decode(frame.command_id, frame.body, self.version)
        except cmpp.CmppError as e:
            log.info("simismg conn %s unreadable 0x%08x: %s", self.id, frame.command_id, e)
            ismg.count("unreadable_pdus")
            if frame.command_id == CommandId.SUBMIT:
                self.send(cmpp.SubmitResp(0, cmpp.Result.BAD_STRUCTURE), frame.sequence)
            return
        if frame.command_id & RESP_BIT:
            self._on_resp(frame.sequence, pdu)
        elif isinstance(pdu, cmpp.Submit):
            ismg.on_submit(self, frame.sequence, pdu)
        elif isinstance(pdu, cmpp.ActiveTest):
            ismg.count("active_tests_received")
            self.send(cmpp.ActiveTestResp(), frame.sequence)
        elif isinstance(pdu, cmpp.Terminate):
            ismg.count("terminates_received")
            self.send(cmpp.TerminateResp(), frame.sequence)
            self.close()
        elif isinstance(pdu, cmpp.Connect):  # a second CONNECT on a connected link
            self.send(cmpp.ConnectResp(ConnectStatus.BAD_STRUCTURE, auth.EMPTY, self.version), frame.sequence)
        else:
            log.info("simismg conn %s: command 0x%08x not served", self.id, frame.command_id)
            ismg.count("unserved_commands")

    def _on_resp(self, sequence: int, pdu: cmpp.Pdu) -> None:
        if isinstance(pdu, cmpp.ActiveTestResp):
            if self._active_test is not None and self._active_test[0] == sequence:
                self._active_test = None
            return
        w = self._waiters.get(sequence)
        if w is not None:
            w.pdu = pdu
            w.event.set()

    def _connect(self, frame: cmpp.Frame) -> None:
        ismg = self.ismg
        try:
            c = cmpp.decode(frame.command_id, frame.body, cmpp.Version.V30)
        except cmpp.CmppError as e:
            log.info("simismg conn %s bad CONNECT: %s", self.id, e)
            status, version, c = ConnectStatus.BAD_STRUCTURE, ismg.version, None
        else:
            assert isinstance(c, cmpp.Connect)
            status, version = ismg.judge_connect(c)
        if status != ConnectStatus.OK or c is None:
            ismg.count("connect_failures")
            log.info("simismg conn %s CONNECT refused (%s)", self.id, ConnectStatus(status).name)
            data = cmpp.encode(cmpp.ConnectResp(status, auth.EMPTY, version), frame.sequence, version)
            try:
                with self._wlock:
                    self.sock.sendall(data)
            except OSError:
                pass
            self.close()
            return
        resp = cmpp.ConnectResp(status, auth.authenticator_ismg(status, c.authenticator, ismg.secret, version), version)
        with self._wlock:  # connected and the resp together: a DELIVER queued at once goes after it
            self.version = version
            data = cmpp.encode(resp, frame.sequence, version)
            try:
                self.sock.sendall(data)
            except OSError:
                self.close()
                return
        log.info("simismg conn %s connected (SP %s, CMPP %x.%x)", self.id, c.source_addr, version >> 4, version & 15)
        ismg.on_connected(self)
