"""The CMPP session: connect and authenticate to a China Mobile gateway (ISMG), read and decode what
it sends, keep time; the same `Link` to the transport as an SMPP bind (`smsbot.session`).

`open_cmpp_links` connects (plain TCP) and sends CMPP_CONNECT: Source_Addr the SP_Id,
AuthenticatorSource = MD5(SP_Id + 9 NULs + shared secret + MMDDHHMMSS), Version 3.0 or 2.0 as
`smsc.protocol` says. A CONNECT_RESP with a Status other than 0 is a refusal (its meaning
logged); one whose AuthenticatorISMG does not check is a gateway that does not know our secret:
it is refused (`LinkDown`) and nothing is sent to it. One connection carries both directions.

A `CmppLink` is a `session.Link` with CMPP's PDUs (`smsbot.cmpp`), so framing and the timers are
the same; its write side is `smsbot.outgoing.CmppOutgoing`:

* a CMPP_DELIVER is an MO (Registered_Delivery 0) or a status report (1). An MO is decoded by its
  Msg_Fmt (0, 8 UCS-2, 15 GBK; `smsbot.cmpp.text`) and handed up as an `Inbound` whose payload is
  UTF-16 (data_coding 8) so the parts of a long MO (TP_udhi, the UDH's reference) are joined by the
  same long-MO step as SMPP's; its Msg_Id is the message reference the redelivery guard uses
  (the gateway redelivers with the same one). A report becomes a `Receipt` whose message id is the Msg_Id the
  SUBMIT_RESP gave (16 hex digits, `smsbot.cmpp.msgid.text`), so it is matched to the sent part;
* the `ReplyTo` of either carries the DELIVER's Msg_Id, which its CMPP_DELIVER_RESP names; a DELIVER
  that cannot be read is refused for good (Result 1), one we fail to decode for now (Result 8,
  flow control: the gateway delivers it again);
* a SUBMIT_RESP goes to the sender with its Msg_Id; Result 8 is throttling (retried), others are
  refusals;
* CMPP_ACTIVE_TEST both ways: the gateway's is answered (`Received.owed`), the answer to ours is
  returned by sequence (`Received.answered`: it keeps an idle link alive and confirms resps);
* CMPP_TERMINATE from the gateway is answered and the link is down; ours is the goodbye on stop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from smsbot import cmpp, log, pdu
from smsbot.cmpp import auth, msgid, text
from smsbot.cmpp.constants import RESP_BIT, ConnectStatus, Result, Version
from smsbot.config import LinkProtocol, SmscSettings
from smsbot.messages import Inbound, Receipt, Status
from smsbot.session import Link, LinkDown, Received, ReplyTo, SequenceGenerator, await_answer, connect

_log = log.get("smsbot.cmpp")
VERSIONS = {LinkProtocol.CMPP3: Version.V30, LinkProtocol.CMPP2: Version.V20}
_CONNECT_REFUSED = {
    ConnectStatus.BAD_STRUCTURE: "bad message structure", ConnectStatus.BAD_SOURCE_ADDR: "unknown SP_Id (Source_Addr)",
    ConnectStatus.AUTH_FAILED: "authentication failed (smsc.cmpp.secret?)",
    ConnectStatus.VERSION_TOO_HIGH: "version too high (try protocol cmpp2)",
}
SUBMIT_REFUSED = 0x45  # ESME_RSUBMITFAIL: a SUBMIT the gateway refused for good (its Result is logged)
_UCS2 = 8  # the data_coding MO payloads are handed up in (UTF-16-BE)
_DELIVER = int(cmpp.CommandId.DELIVER)
_SUBMIT_RESP = int(cmpp.CommandId.SUBMIT_RESP)


def status_of(result: int) -> int:
    """The SMPP status the sender (`smsbot.outbox`) understands for a SUBMIT_RESP's Result."""
    if result == Result.OK:
        return Status.ROK
    if result == Result.FLOW_CONTROL:
        return Status.RTHROTTLED
    return SUBMIT_REFUSED


class _Framer:
    """`smsbot.cmpp.Framer` as the link reads it: frames as (command_id, 0, sequence, body), and a
    stream that cannot be framed as `pdu.FramingError` (with what was framed before it)."""

    def __init__(self, max_len: int) -> None:
        self._framer = cmpp.Framer(max_len)

    @property
    def buffered(self) -> int:
        return self._framer.buffered

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        try:
            return [(f.command_id, 0, f.sequence, f.body) for f in self._framer.feed(data)]
        except cmpp.FramingError as e:
            raise pdu.FramingError(str(e), [(f.command_id, 0, f.sequence, f.body) for f in e.frames]) from None


@dataclass(eq=False)
class CmppLink(Link):
    """One CMPP connection to the gateway (both directions). `version`: 0x30 or 0x20."""

    version: int = Version.V30

    # -- reading --------------------------------------------------------------------------------------
    def _handle(self, frames: list[tuple[int, int, int, bytes]], got: Received) -> Received:
        for command_id, _st, seq, body in frames:
            try:
                message = cmpp.decode(command_id, body, self.version)
            except cmpp.CmppError as e:
                if command_id == _DELIVER:  # the same octets will never read: not again
                    _log.error("mo_rejected", reason=str(e), result=int(Result.BAD_STRUCTURE), pdu=body.hex()[:64])
                    got.refused.append((ReplyTo(self, seq, _msg_id_of(body)), Status.RX_P_APPN))
                elif command_id == _SUBMIT_RESP:
                    got.submit_resps.append((seq, Status.RSYSERR, ""))
                else:
                    _log.warning("pdu_unreadable", command_id=hex(command_id), sequence=seq, reason=str(e))
                continue
            if isinstance(message, cmpp.Deliver):
                self._on_deliver(seq, message, got)
            elif isinstance(message, cmpp.SubmitResp):
                if message.result != Result.OK:
                    _log.warning("submit_resp_result", sequence=seq, result=message.result)
                got.submit_resps.append((seq, status_of(message.result),
                                         msgid.text(message.msg_id) if message.result == Result.OK else ""))
            elif isinstance(message, cmpp.ActiveTest):
                got.owed.append(cmpp.encode(cmpp.ActiveTestResp(), seq, self.version))
            elif isinstance(message, cmpp.ActiveTestResp):
                got.answered.append(seq)
            elif isinstance(message, cmpp.Terminate):
                got.owed.append(cmpp.encode(cmpp.TerminateResp(), seq, self.version))
                got.down = "gateway sent CMPP_TERMINATE"
                return got
            elif command_id & RESP_BIT:
                pass  # responses we do not wait for (TERMINATE_RESP outside the goodbye, ...)
            else:
                _log.warning("pdu_unsupported", command_id=hex(command_id), sequence=seq)
        return got

    def _on_deliver(self, seq: int, d: cmpp.Deliver, got: Received) -> None:
        reply = ReplyTo(self, seq, d.msg_id)
        if d.report is not None:
            r = d.report
            got.receipts.append((Receipt(msgid.text(r.msg_id), r.stat.strip() or "UNKNOWN"), reply))
            return
        try:
            payload, segment = text.split_content(d.tp_udhi, d.msg_content)
            words = text.decode_text(d.msg_fmt, payload)
            utf16 = words.encode("utf-16-be", "surrogatepass") if d.msg_fmt != _UCS2 else payload
        except Exception as e:  # our bug, not the gateway's: a later version may read it, so again later
            _log.error("mo_undecodable", reason=repr(e), result=int(Result.FLOW_CONTROL))
            got.refused.append((reply, Status.RX_T_APPN))
            return
        # the Msg_Id as the message reference: a redelivery carries the same one, a person's repeat a new
        # one, so the redelivery guard tells them apart as SMPP's user_message_reference does
        got.mos.append((Inbound(d.src_terminal_id, d.dest_id, words, seq, segment, d.msg_id, utf16, _UCS2), reply))

    # -- keepalives and the goodbye -----------------------------------------------------------------------
    probe_name: ClassVar[str] = "CMPP_ACTIVE_TEST"

    def _keepalive_answer(self, frame: tuple[int, int, int, bytes]) -> bytes | None:
        if frame[0] == cmpp.CommandId.ACTIVE_TEST:
            return cmpp.encode(cmpp.ActiveTestResp(), frame[2], self.version)
        return None

    def _goodbye_frames(self, frames: list[tuple[int, int, int, bytes]], got: Received) -> bool:
        answered = False
        for command_id, _st, seq, body in frames:
            if command_id == cmpp.CommandId.TERMINATE_RESP:
                answered = True
            elif command_id == _DELIVER:
                got.refused.append((ReplyTo(self, seq, _msg_id_of(body)), Status.RX_T_APPN))
            elif command_id == cmpp.CommandId.ACTIVE_TEST:
                got.owed.append(cmpp.encode(cmpp.ActiveTestResp(), seq, self.version))
        return answered


def _msg_id_of(body: bytes) -> int:
    """A DELIVER's Msg_Id (its first 8 octets), even when the rest cannot be read."""
    return int.from_bytes(body[:8].ljust(8, b"\0"), "big")


def open_cmpp_links(s: SmscSettings, sequences: SequenceGenerator) -> list[Link]:
    """Connect and authenticate; LinkDown (with the reason) when the gateway refuses us or fails
    its own check."""
    c = s.cmpp
    version = VERSIONS[s.protocol]
    sock = connect(s)
    link = CmppLink(sock, True, True, f"{s.host}:{s.port}/{c.sp_id}", _Framer(min(s.max_pdu_bytes, cmpp.framing.MAX_PDU_LEN)),
                    version=version)
    try:
        ts = auth.timestamp(datetime.now())
        source = auth.authenticator_source(c.sp_id, c.secret, ts)
        seq = sequences.next_sequence()
        link.send_now(cmpp.encode(cmpp.Connect(c.sp_id, source, version, ts), seq, version))
        command_id, _st, _seq, body = await_answer(
            link, s, "CMPP_CONNECT", lambda f: f[0] == cmpp.CommandId.CONNECT_RESP and f[2] == seq)
        try:
            resp = cmpp.decode(command_id, body, version)
        except cmpp.CmppError as e:
            raise LinkDown(f"unreadable CMPP_CONNECT_RESP: {e}") from None
        assert isinstance(resp, cmpp.ConnectResp)
        if resp.status != ConnectStatus.OK:
            why = _CONNECT_REFUSED.get(resp.status, "refused")  # type: ignore[call-overload]
            raise LinkDown(f"CMPP_CONNECT refused: Status {resp.status} ({why})")
        if not auth.ismg_ok(resp.status, source, c.secret, version, resp.authenticator):
            raise LinkDown("the gateway's AuthenticatorISMG does not check: it does not know our secret; refusing it")
    except BaseException:
        link.close()
        raise
    sock.settimeout(s.response_timeout)  # reads follow select; a write may wait this long
    link.last_pdu = time.monotonic()
    return [link]
