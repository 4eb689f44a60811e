"""A tiny CMPP SP built on smsbot.cmpp, for the tests: it is not smsbot's transport (that is still to come).

`Sp.open(...)` connects and CONNECTs synchronously (checking AuthenticatorISMG), then a reader
thread answers every DELIVER (Result from `answer(deliver)`; None leaves it unanswered) and every
ACTIVE_TEST, and keeps what arrived. `submit`, `active_test` and `terminate` wait for their resp.
Every PDU is kept in `wire` as a `Wire`: ("sp", its octets, the PDU meant) when the SP wrote it,
("ismg", its octets, the PDU as read) when it read it, in the order of each direction on the
connection (the tshark check rebuilds the TCP session from it). A DELIVER or ACTIVE_TEST counts as
arrived (`delivers`, `active_tests_received`) once its resp is written.

`SP_ID`, `SECRET` and `CMPP_SERVICES` are the SP's identity, also the bot's in the end-to-end tests
where smsbot is the SP (tests/test_e2e_cmpp.py, tests/test_e2e_cmpp_tshark.py).
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from typing import Callable, NamedTuple

from smsbot import cmpp
from smsbot.cmpp import auth

SP_ID = "901234"
SECRET = "s3cret"
# the CMPP Service_Id of each of the test config's services, for a bot (`smsc.cmpp.services`) that is this SP
CMPP_SERVICES = {"VIDEO": {"service_id": "MVIDEO"}, "MUSIC": {"service_id": "MMUSIC"}, "NEWS": {"service_id": "MNEWS"},
                 "GAME": {"service_id": "MGAME"}, "READ": {"service_id": "MREAD"}, "WEATHER": {"service_id": "MWEATHER"},
                 "RING": {"service_id": "MRING"}}
CONNECT_TIME = datetime(2025, 3, 14, 9, 30, 5)


class Wire(NamedTuple):
    who: str  # "sp" (written by the SP) or "ismg" (read from the gateway)
    data: bytes
    pdu: cmpp.Pdu


class Refused(Exception):
    def __init__(self, resp: cmpp.ConnectResp):
        super().__init__(f"CONNECT refused with Status {resp.status}")
        self.resp = resp


class Sp:
    def __init__(self, sock: socket.socket, version: int, answer: Callable[[cmpp.Deliver], int | None]):
        self.sock = sock
        self.version = version
        self.answer = answer
        self.wire: list[Wire] = []
        self.delivers: list[tuple[int, cmpp.Deliver]] = []  # (Sequence_Id, DELIVER) as read
        self.active_tests_received = 0
        self.closed = threading.Event()
        self._framer = cmpp.Framer()
        self._cond = threading.Condition()
        self._wlock = threading.Lock()
        self._seq = 0
        self._waiting: dict[int, cmpp.Pdu | None] = {}
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, port: int, *, sp_id: str = SP_ID, secret: str = SECRET, version: int = 0x30,
             at: datetime = CONNECT_TIME, answer: Callable[[cmpp.Deliver], int | None] = lambda d: 0,
             check: bool = True) -> Sp:
        """Connected (or `Refused`); `check` False skips the AuthenticatorISMG check."""
        sp = cls(socket.create_connection(("127.0.0.1", port), timeout=5), version, answer)
        ts = auth.timestamp(at)
        source = auth.authenticator_source(sp_id, secret, ts)
        seq = sp._write(cmpp.Connect(sp_id, source, version, ts))
        resp = sp._read_until(cmpp.ConnectResp)
        assert resp is not None and resp[0] == seq
        connect_resp = resp[1]
        if connect_resp.status != 0:
            sp.sock.close()
            raise Refused(connect_resp)
        if check and not auth.ismg_ok(0, source, secret, version, connect_resp.authenticator):
            sp.sock.close()
            raise AssertionError("AuthenticatorISMG does not check")
        sp.version = connect_resp.version
        sp._thread = threading.Thread(target=sp._reader, daemon=True)
        sp._thread.start()
        return sp

    # -- writing
    def _write(self, pdu: cmpp.Pdu, sequence: int | None = None) -> int:
        with self._wlock:
            if sequence is None:
                self._seq += 1
                sequence = self._seq
            data = cmpp.encode(pdu, sequence, self.version)
            self.wire.append(Wire("sp", data, pdu))
            self.sock.sendall(data)
        return sequence

    def request(self, pdu: cmpp.Pdu, timeout: float = 5.0) -> cmpp.Pdu | None:
        with self._wlock:
            self._seq += 1
            seq = self._seq
        with self._cond:
            self._waiting[seq] = None
        self._write(pdu, seq)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting.get(seq) is None and not self.closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._waiting.pop(seq, None)

    def submit(self, s: cmpp.Submit, timeout: float = 5.0) -> cmpp.SubmitResp:
        resp = self.request(s, timeout)
        assert isinstance(resp, cmpp.SubmitResp), resp
        return resp

    def active_test(self, timeout: float = 5.0) -> cmpp.ActiveTestResp:
        resp = self.request(cmpp.ActiveTest(), timeout)
        assert isinstance(resp, cmpp.ActiveTestResp), resp
        return resp

    def terminate(self, timeout: float = 5.0) -> cmpp.TerminateResp:
        resp = self.request(cmpp.Terminate(), timeout)
        assert isinstance(resp, cmpp.TerminateResp), resp
        return resp

    def close(self) -> None:
        for how in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):  # shutdown wakes the reader
            try:
                how()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- reading
    def _read_until(self, kind: type) -> tuple[int, cmpp.Pdu] | None:
        """Before the reader runs: read until a PDU of `kind` (nothing else is expected first)."""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return None
            for frame in self._framer.feed(data):
                pdu = cmpp.decode(frame.command_id, frame.body, self.version)
                self.wire.append(Wire("ismg", cmpp.encode_header(*frame), pdu))
                if isinstance(pdu, kind):
                    return frame.sequence, pdu

    def _reader(self) -> None:
        try:
            self.sock.settimeout(None)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                for frame in self._framer.feed(data):
                    self._on_frame(frame)
        except OSError:
            pass
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def _on_frame(self, frame: cmpp.Frame) -> None:
        pdu = cmpp.decode(frame.command_id, frame.body, self.version)
        with self._wlock:
            self.wire.append(Wire("ismg", cmpp.encode_header(*frame), pdu))
        if isinstance(pdu, cmpp.Deliver):
            result = self.answer(pdu)
            if result is not None:
                self._write(cmpp.DeliverResp(pdu.msg_id, result), frame.sequence)
            with self._cond:
                self.delivers.append((frame.sequence, pdu))
                self._cond.notify_all()
        elif isinstance(pdu, cmpp.ActiveTest):
            self._write(cmpp.ActiveTestResp(), frame.sequence)
            with self._cond:
                self.active_tests_received += 1
                self._cond.notify_all()
        else:
            with self._cond:
                if frame.sequence in self._waiting:
                    self._waiting[frame.sequence] = pdu
                    self._cond.notify_all()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Until `condition()` (checked whenever something arrives) holds; its last value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    return condition()
                self._cond.wait(left)
            return True
