"""The load SMSC over CMPP 3.0 / 2.0: `bench.load_smsc.LoadSmsc`'s traffic, window and measurement,
on a CMPP wire (``python -m bench --protocols cmpp3``).

Only the wire differs: CMPP_CONNECT instead of a bind (AuthenticatorSource checked, CONNECT_RESP
with AuthenticatorISMG), MOs as CMPP_DELIVER (each with a Msg_Id of its own, so repeated texts are
not taken for redeliveries), CMPP_DELIVER_RESP (Result 0 or an error) instead of deliver_sm_resp,
CMPP_SUBMIT answered with CMPP_SUBMIT_RESP and matched by its first Dest_terminal_Id (parts with
a Pk_number over 1 counted as extra parts), CMPP_ACTIVE_TEST and CMPP_TERMINATE answered. Encoded with smsbot's
CMPP codec, as the SMPP load SMSC uses smsbot's PDU codec; each DELIVER body is encoded once per
(text, subscriber) and only its Msg_Id and header are added per MO.

As lean per MO as the SMPP load SMSC (it must never be the bottleneck: at window 10 a round goes
through three processes on two cores, and every µs it spends is a µs the bot waits). A SUBMIT is
not decoded field by field: only what the measurement needs is read at its fixed offset
(Pk_number, the first Dest_terminal_Id: `smsbot.cmpp.codec.submit_dest_at`); the SUBMIT_RESP is
packed with `struct` and a DELIVER_RESP's Result read from its octets. Decoding every SUBMIT with
the codec cost it about twice the SMPP load's CPU per MO.
"""

from __future__ import annotations

import itertools
import struct

from smsbot import cmpp
from smsbot import pdu as _pdu
from smsbot.cmpp import auth, codec, fields

from bench.load_smsc import COUNTRY_CODE, SHORT_CODE, LoadSmsc, _Conn, _Mo, _Run

_HDR = struct.Struct(">III")
_MSG_ID = struct.Struct(">Q")
_DELIVER_RESP = int(cmpp.CommandId.DELIVER_RESP)
_SUBMIT = int(cmpp.CommandId.SUBMIT)
_SUBMIT_RESP = int(cmpp.CommandId.SUBMIT_RESP)
_PK_NUMBER = codec.SUBMIT_PK_NUMBER_AT


class _Framer:
    """smsbot.cmpp.Framer as the load SMSC reads frames: (command_id, 0, sequence, body), and an
    unframeable stream as the SMPP framer says it."""

    def __init__(self) -> None:
        self._framer = cmpp.Framer()

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        try:
            return [(f.command_id, 0, f.sequence, f.body) for f in self._framer.feed(data)]
        except cmpp.FramingError as e:
            raise _pdu.FramingError(str(e)) from None


class CmppLoadSmsc(LoadSmsc):
    """The load SMSC speaking CMPP `version` (0x30 or 0x20) to SP `sp_id` with `secret`."""

    def __init__(self, *, version: int = 0x30, sp_id: str = "901234", secret: str = "secret", **kw):
        super().__init__(**kw)
        self.version, self.sp_id, self.secret = version, sp_id, secret
        self._ids = itertools.count(1)
        self._bodies: dict[tuple[str, str], bytes] = {}  # (text, msisdn) -> DELIVER body after Msg_Id
        self._dest_count_at, self._dest_width = codec.submit_dest_at(version), fields.layout(version).terminal_id
        self._submit_resp = struct.Struct(f">IIIQ{fields.layout(version).result}x")  # header, Msg_Id, Result 0

    def _accept(self) -> None:
        before = set(self.conns)
        super()._accept()
        for fd in set(self.conns) - before:
            self.conns[fd].framer = _Framer()  # type: ignore[assignment]

    def _read(self, c: _Conn, now: float) -> None:
        frames = self._frames(c)
        if frames is None:
            return
        run = self._run
        v = self.version
        resp = self._submit_resp
        for cmd, _st, seq, body in frames:
            if cmd == _DELIVER_RESP:
                if run is not None:  # Msg_Id 8, then the Result in 4 octets (3.0) or 1 (2.0): not 0 is a failure
                    self._mo_resp(run, seq, body[8:].strip(b"\0") != b"")
            elif cmd == _SUBMIT:
                self.message_id += 1
                c.queue(resp.pack(resp.size, _SUBMIT_RESP, seq, self.message_id))
                if run is None:
                    continue
                at, width = self._dest_count_at, self._dest_width
                dest = body[at + 1:at + 1 + width].split(b"\0", 1)[0].strip().decode("ascii", "replace") if len(body) > at and body[at] else ""
                if dest.startswith(COUNTRY_CODE) and len(dest) > 11:
                    dest = dest[len(COUNTRY_CODE):]
                self._submitted(run, dest, len(body) > _PK_NUMBER and body[_PK_NUMBER] > 1, now)
            elif cmd == cmpp.CommandId.CONNECT:
                self._connect(c, seq, body)
            elif cmd == cmpp.CommandId.ACTIVE_TEST:
                c.queue(cmpp.encode(cmpp.ActiveTestResp(), seq, v))
            elif cmd == cmpp.CommandId.TERMINATE:
                c.queue(cmpp.encode(cmpp.TerminateResp(), seq, v))
                c.closing = True

    def _connect(self, c: _Conn, seq: int, body: bytes) -> None:
        req = cmpp.decode(cmpp.CommandId.CONNECT, body, self.version)
        assert isinstance(req, cmpp.Connect)
        ok = req.source_addr == self.sp_id and auth.source_ok(req.source_addr, self.secret, req.timestamp, req.authenticator)
        status = 0 if ok and c.bind is None else 3
        ismg = auth.authenticator_ismg(status, req.authenticator, self.secret, self.version) if status == 0 else auth.EMPTY
        c.queue(cmpp.encode(cmpp.ConnectResp(status, ismg, self.version), seq, self.version))
        if status == 0:
            c.bind, c.system_id = "trx", req.source_addr
            self.binds.append(("trx", req.source_addr))

    def _fill(self, run: _Run, c: _Conn, now: float) -> None:
        budget = self._budget(run, c, now, 200)
        if budget <= 0:
            return
        parts = []
        seq = c.seq
        for _ in range(budget):
            sub = run.idle.popleft()
            msisdn = run.msisdns[sub]
            text = run.wl.steps[run.step[sub] % run.nsteps]
            rest = self._bodies.get((text, msisdn))
            if rest is None:
                rest = self._bodies[(text, msisdn)] = cmpp.encode_body(cmpp.Deliver(
                    msg_id=0, dest_id=SHORT_CODE, src_terminal_id=msisdn, msg_content=text.encode("ascii")),
                    self.version)[8:]
            seq = 1 if seq >= 0x7FFFFFFF else seq + 1
            parts.append(_HDR.pack(12 + 8 + len(rest), cmpp.CommandId.DELIVER, seq))
            parts.append(_MSG_ID.pack(next(self._ids)))
            parts.append(rest)
            mo = _Mo(sub, msisdn, seq, now)
            run.inflight[msisdn] = mo
            run.by_seq[seq] = mo
        c.seq = seq
        c.queue(b"".join(parts))
        self._sent(run, budget, now)
