"""One accepted CMPP connection of the simulated ISMG: CONNECT, ACTIVE_TEST, TERMINATE, DELIVERs sent
and answered (the reader thread and the write lock are `connection`'s).

The connection authenticates the SP itself (`SimIsmg.judge_connect` says the status) and answers
ACTIVE_TEST and TERMINATE; SUBMITs go to its `SimIsmg`. DELIVERs it sends (`send_deliver`) wait
for their DELIVER_RESP through a `CmppWaiter` keyed by Sequence_Id. Before a successful CONNECT
anything but a CONNECT closes the connection, as gateways do; a refused CONNECT is answered
(AuthenticatorISMG all zeros) and the connection closed.

When nothing has arrived for the ISMG's `active_test_interval` it sends an ACTIVE_TEST; one left
unanswered for `response_timeout` closes the connection (`active_test()` sends one at once).

Fault modes use `connection`'s `drop` (FIN, nothing more answered: a SUBMIT read then counts as
dropped) and `wedge` (silence after a partial PDU).
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from smsbot import cmpp
from smsbot.cmpp import auth
from smsbot.cmpp.constants import RESP_BIT, CommandId, ConnectStatus

from . import cmpp_profile
from .connection import Connection, Waiter

if TYPE_CHECKING:
    from .ismg import SimIsmg

log = logging.getLogger("smsbot.simulator")


class CmppWaiter(Waiter):
    __slots__ = ("pdu",)

    def __init__(self) -> None:
        super().__init__()
        self.pdu: cmpp.Pdu | None = None  # None: no answer (timeout or connection lost)


class IsmgConn(Connection):
    label = "simismg"
    tick = 0.1
    framing_error = cmpp.FramingError
    _ids = itertools.count(1)

    def __init__(self, ismg: SimIsmg, sock: socket.socket, addr: Any, stopping: threading.Event):
        super().__init__(sock, addr, cmpp.Framer(), stopping)
        self.ismg = ismg
        self.version = 0  # the version agreed at CONNECT (0: not connected)
        self._slock = threading.Lock()
        self._seq = 0
        self._active_test: tuple[int, float] | None = None  # (sequence, sent at) of ours unanswered

    @property
    def connected(self) -> bool:
        return bool(self.version) and not self.closed.is_set() and not self.quiet

    def next_seq(self) -> int:
        with self._slock:
            self._seq = 1 if self._seq >= 0xFFFFFFFF else self._seq + 1
            return self._seq

    # -- writing
    def send(self, pdu: cmpp.Pdu, sequence: int | None = None, commit: Callable[[], None] | None = None) -> int | None:
        """Write `pdu` (a fresh Sequence_Id unless given); the sequence used, None when closed,
        dropping or wedged. `commit` (storing a SUBMIT) runs under the write lock just before."""
        seq = self.next_seq() if sequence is None else sequence
        return seq if self._write(cmpp.encode(pdu, seq, self.version or cmpp.Version.V30), commit) else None

    def send_deliver(self, d: cmpp.Deliver, timeout: float, space_padded: bool = False) -> CmppWaiter:
        """Send `d` and wait up to `timeout` for its DELIVER_RESP; `space_padded`: its text fields
        padded with spaces (the field profile)."""
        seq = self.next_seq()
        version = self.version or cmpp.Version.V30
        raw = cmpp.encode(d, seq, version)
        if space_padded:
            raw = cmpp_profile.space_padded(raw, version)
        return self._exchange(seq, CmppWaiter(), raw, timeout)

    def drop(self, reason: str) -> bool:
        if not super().drop(reason):
            return False
        self.ismg.count("connections_dropped")
        return True

    def active_test(self) -> int | None:
        """Send an ACTIVE_TEST now (unless one is unanswered); its sequence."""
        if not self.connected or self._active_test is not None:
            return None
        seq = self.send(cmpp.ActiveTest())
        if seq is not None:
            self._active_test = (seq, time.monotonic())
            self.ismg.count("active_tests_sent")
        return seq

    def _closed(self) -> None:
        self.ismg.conn_closed(self)

    # -- reading
    def _framing_failed(self, error: cmpp.FramingError) -> None:
        log.warning("simismg conn %s framing error: %s", self.id, error)
        self.ismg.count("framing_errors")
        for frame in error.frames:
            self._handle(frame)

    def _idle(self) -> None:
        if self._quiet_idle():
            return
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
        if self.quiet:  # read, never answered
            if self.dropping and frame.command_id == CommandId.SUBMIT:
                ismg.count("submits_received")
                ismg.count("submits_dropped")
            return
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
        w = self._answered(sequence)
        if isinstance(w, CmppWaiter):
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
            self._write(cmpp.encode(cmpp.ConnectResp(status, auth.EMPTY, version), frame.sequence, version))
            self.close()
            return
        resp = cmpp.ConnectResp(status, auth.authenticator_ismg(status, c.authenticator, ismg.secret, version), version)
        # connected and the resp together under the write lock: a DELIVER queued at once goes after it
        if not self._write(cmpp.encode(resp, frame.sequence, version), commit=lambda: self._agree(version)):
            return
        log.info("simismg conn %s connected (SP %s, CMPP %x.%x)", self.id, c.source_addr, version >> 4, version & 15)
        ismg.on_connected(self)

    def _agree(self, version: int) -> None:
        self.version = version
