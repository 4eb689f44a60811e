"""The chaos SMSC speaking CMPP 3.0 or 2.0 instead of SMPP (``--protocol cmpp3|cmpp2``).

Everything the chaos SMSC does — the conversations, the rate, the MO window, redelivery of what
was not acknowledged, link drops, the counting of replies and duplicates — is `ChaosSmsc`'s; this
module only changes the wire. Like the SMPP side it shares no code with smsbot: the few CMPP PDUs
it needs are written and read here with `struct`.

* CMPP_CONNECT: AuthenticatorSource checked against `secret` (Status 3 otherwise), a Version
  above the one it speaks refused (Status 4); CONNECT_RESP with AuthenticatorISMG =
  MD5(Status + AuthenticatorSource + secret). A connection then counts as a transceiver bind.
* MOs go as CMPP_DELIVER (Msg_Fmt 0 for plain ASCII, else 8), each MO with its own Msg_Id, the
  same on every redelivery (as an ISMG does). DELIVER_RESP Result 0 acknowledges; 8 (flow
  control) and 9+ are temporary (redelivered after `retry_delay`); 1-7 reject.
* CMPP_SUBMIT is read (3.0 or 2.0 layout), answered with SUBMIT_RESP (a Msg_Id, Result 0) and
  counted like a submit_sm: TP_udhi and the UDH join the parts.
* CMPP_ACTIVE_TEST and CMPP_TERMINATE are answered.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from typing import Any

from bench.chaos.smsc import (ESM_UDHI, ESME_ROK, ESME_RX_T_APPN, ChaosSmsc, Mo, Session, ShortMessage, COUNTRY_CODE)

CONNECT, CONNECT_RESP = 0x00000001, 0x80000001
TERMINATE, TERMINATE_RESP = 0x00000002, 0x80000002
SUBMIT, SUBMIT_RESP = 0x00000004, 0x80000004
DELIVER, DELIVER_RESP = 0x00000005, 0x80000005
ACTIVE_TEST, ACTIVE_TEST_RESP = 0x00000008, 0x80000008
RESP = 0x80000000
_HDR = struct.Struct(">III")
MAX_PDU = 4096
PERMANENT = 0xFF  # a Result 1-7 to a DELIVER, as the SMPP side's counters take it (a permanent reject)


def header(command_id: int, seq: int, body: bytes = b"") -> bytes:
    return _HDR.pack(12 + len(body), command_id, seq) + body


def fixed(text: str | bytes, width: int) -> bytes:
    data = text.encode("ascii") if isinstance(text, str) else text
    return data[:width].ljust(width, b"\0")


def unpad(data: bytes) -> str:
    return data.rstrip(b"\0 ").decode("latin-1")


class CmppSession(Session):
    """One CMPP connection: 12-octet headers, no status field."""

    version = 0x30

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self.buf
        buf += data
        smsc = self.smsc
        while len(buf) >= 12:
            length, cmd, seq = _HDR.unpack_from(buf, 0)
            if length < 12 or length > MAX_PDU:
                smsc.c.malformed += 1
                self.abort()
                return
            if len(buf) < length:
                break
            body = bytes(buf[12:length])
            del buf[:length]
            smsc._handle(self, cmd, 0, seq, body)
            if self.closing:
                break
        self.flush()


class ChaosIsmg(ChaosSmsc):
    """`ChaosSmsc` over CMPP. `version`: the highest it speaks (0x30 or 0x20)."""

    session_class = CmppSession

    def __init__(self, *args: Any, sp_id: str = "901234", secret: str = "secret", version: int = 0x30, **kw: Any):
        super().__init__(*args, **kw)
        self.sp_id, self.secret, self.version = sp_id, secret, version
        self._mo_ids: dict[int, int] = {}  # id(MO) -> its Msg_Id (the same on every redelivery)
        self._mo_id_seq = itertools.count(1)
        self._submit_ids = itertools.count(1)

    # -- widths of the connection's version ----------------------------------------------------------
    @staticmethod
    def _wide(s: CmppSession) -> tuple[int, int]:
        """(terminal id width, Result/Status width)."""
        return (32, 4) if s.version >= 0x30 else (21, 1)

    def _mo_pdu(self, s: Session, seq: int, mo: Mo) -> bytes:  # type: ignore[override]
        assert isinstance(s, CmppSession)
        msg_id = self._mo_ids.setdefault(id(mo), (0x1234 << 16) | next(self._mo_id_seq))
        plain = all(ch.isascii() and (ch.isalnum() or ch in " ,;?") for ch in mo.text)
        fmt, content = (0, mo.text.encode("ascii")) if plain else (8, mo.text.encode("utf-16-be"))
        term, _result = self._wide(s)
        body = b"".join((
            struct.pack(">Q", msg_id), fixed(self.short_code, 21), fixed("", 10), bytes((0, 0, fmt)),
            fixed(mo.sub.msisdn, term), b"\0" if s.version >= 0x30 else b"",  # Src_terminal_Type (3.0)
            bytes((0, len(content))), content, fixed("", 20 if s.version >= 0x30 else 8),  # LinkID / Reserve
        ))
        return header(DELIVER, seq, body)

    def _handle(self, s: Session, cmd: int, status: int, seq: int, body: bytes) -> None:  # type: ignore[override]
        assert isinstance(s, CmppSession)
        self.last_activity_at = self.loop.time()
        if cmd == CONNECT:
            self._connect(s, seq, body)
        elif s.kind is None:
            self.c.malformed += 1  # anything before CONNECT: a gateway closes the connection
            s.abort()
        elif cmd == DELIVER_RESP:
            _term, width = self._wide(s)
            result = int.from_bytes(body[8:8 + width], "big") if len(body) >= 8 + width else 1
            mo = s.inflight.pop(seq, None)
            if mo is not None:
                mo.session = None
                self._mo_resp(mo, ESME_ROK if result == 0 else ESME_RX_T_APPN if result >= 8 else PERMANENT)
        elif cmd == SUBMIT:
            _term, width = self._wide(s)
            try:
                sm = self.parse_submit(s, body)
            except (IndexError, ValueError, struct.error):
                self.c.malformed += 1
                s.send(header(SUBMIT_RESP, seq, bytes(8) + (1).to_bytes(width, "big")))
                return
            self.c.submits += 1
            s.send(header(SUBMIT_RESP, seq, struct.pack(">Q", next(self._submit_ids)) + bytes(width)))
            self._submitted(sm)
        elif cmd == ACTIVE_TEST:
            self.c.enquire_links += 1
            s.send(header(ACTIVE_TEST_RESP, seq, b"\0"))
        elif cmd == TERMINATE:
            s.send(header(TERMINATE_RESP, seq))
            s.flush()
            s.closing = True
            self._session_gone(s)
            if s.transport is not None:
                s.transport.close()
        # responses (ACTIVE_TEST_RESP, ...) and anything else: nothing to do

    def _connect(self, s: CmppSession, seq: int, body: bytes) -> None:
        if len(body) < 27:
            s.send(header(CONNECT_RESP, seq, bytes((1,)) + bytes(16) + bytes((self.version,))))
            return
        source, auth, version, ts = unpad(body[:6]), body[6:22], body[22], struct.unpack(">I", body[23:27])[0]
        s.version = 0x30 if version >= 0x30 else 0x20
        _term, width = self._wide(s)
        expected = hashlib.md5(source.encode("latin-1") + bytes(9) + self.secret.encode() + b"%010d" % ts).digest()
        st = 2 if source != self.sp_id else 3 if auth != expected else 4 if version > self.version else 0
        if st:
            self.c.bind_refused += 1
        ismg = hashlib.md5(st.to_bytes(width, "big") + auth + self.secret.encode()).digest() if st == 0 else bytes(16)
        s.send(header(CONNECT_RESP, seq, st.to_bytes(width, "big") + ismg + bytes((s.version,))))
        if st == 0:
            s.kind = "trx"
            self.c.binds += 1

    @staticmethod
    def parse_submit(s: CmppSession, body: bytes) -> ShortMessage:
        """The fields of a CMPP_SUBMIT this SMSC cares about, as a submit_sm's (`ShortMessage`)."""
        term, _width = ChaosIsmg._wide(s)
        v3 = s.version >= 0x30
        off = 8 + 4 + 10 + 1 + term + (1 if v3 else 0)  # Msg_Id .. Fee_terminal_Id (+ type)
        tp_udhi, fmt = body[off + 1], body[off + 2]
        off += 3 + 6 + 2 + 6 + 17 + 17  # TP_pId, TP_udhi, Msg_Fmt, Msg_src, FeeType, FeeCode, ValId_Time, At_Time
        src = unpad(body[off:off + 21])
        off += 21
        count = body[off]
        off += 1
        dest = body[off:off + term].rstrip(b"\0 ")
        off += term * count + (1 if v3 else 0)
        length = body[off]
        content = body[off + 1:off + 1 + length]
        if len(content) != length or count < 1:
            raise ValueError("Msg_Content runs past the PDU")
        if dest.startswith(COUNTRY_CODE) and len(dest) > 11:
            dest = dest[len(COUNTRY_CODE):]
        return ShortMessage(src, dest.decode("latin-1"), ESM_UDHI if tp_udhi else 0, 8 if fmt == 8 else 1, content, {})
