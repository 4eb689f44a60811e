"""The SMPP session: connect, bind, frame and decode what comes in, keep time, declare a link dead.

This module owns the links to the SMSC up to what they read; what is written on a bound link is
`smsbot.outgoing`'s. `open_links` connects (TCP, or TLS that verifies the SMSC's certificate *and
host name*) and binds through smsbot's own codec (`smsbot.pdu`) — one transceiver link, or a
receiver and a transmitter (the bind and the keepalives answered while it waits are the only
writes here). A `Link` then:

* reads what the socket has and cuts it into PDUs (`read`); the link-level PDUs get their answers
  here (enquire_link_resp, unbind_resp, generic_nack for commands we do not serve), returned in
  `Received.owed` for the write side to send;
* returns which of our questions (enquire_link) the SMSC answered, by sequence
  (`Received.answered`): the write side knows which resps each one confirms;
* keeps time (`check`): when no *complete* PDU arrived for `smsc.enquire_link_interval` it says
  an enquire_link is due (the write side sends it); the link is dead (`LinkDown`) when no PDU
  answers it within `smsc.response_timeout`, or when a PDU that started arriving does not complete
  within it (a partial PDU must not wedge the link: stray bytes do not count as life), or when a
  header announces more than `smsc.max_pdu_bytes` (the framer refuses it as soon as it is visible).

What the link reads for the layers above — MOs (deliver_sm and data_sm), delivery receipts,
submit_sm responses — it *returns* (`read`: a `Received`), each MO and receipt with a `ReplyTo`
handle, opaque to the layers above, that the resp goes back through. A link never calls upwards
and never writes on a bound socket. Decoding is liberal (`smsbot.pdu`); a PDU that can never be
understood is refused with a permanent error, one that might decode later (our own bug) with a
temporary one (`Received.refused`), and every refusal is logged with its reason and the PDU in
hex with the phone numbers masked.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from smsbot import codec, log, pdu, sockio
from smsbot.config import BindMode, SmscSettings
from smsbot.messages import CommandId, DeliverSm, Inbound, Receipt, Status

_log = log.get("smsbot.session")
READ_CHUNK = 262144
_BIND_RESP = {
    CommandId.BIND_TRANSCEIVER: CommandId.BIND_TRANSCEIVER_RESP,
    CommandId.BIND_RECEIVER: CommandId.BIND_RECEIVER_RESP,
    CommandId.BIND_TRANSMITTER: CommandId.BIND_TRANSMITTER_RESP,
}
_DELIVER_SM = int(CommandId.DELIVER_SM)
_DATA_SM = int(CommandId.DATA_SM)
_SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)


class LinkDown(Exception):
    """The SMSC went away, refused us, or stopped answering."""


class SequenceGenerator:
    """Our SMPP sequence numbers, 1..0x7FFFFFFF, shared across reconnects (never restarts at 1)."""

    MAX = 0x7FFFFFFF

    def __init__(self, start: int = 0):
        self._sequence = start

    @property
    def sequence(self) -> int:
        return self._sequence

    def next_sequence(self) -> int:
        self._sequence = 1 if self._sequence >= self.MAX else self._sequence + 1
        return self._sequence


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Where and how the resp to one MO or receipt goes: opaque above the link that made it (the
    pipeline hands it back with a status; the transport gives it to that link's write side,
    `smsbot.outgoing`). `detail` is the protocol's own (SMPP: whether it came as data_sm; CMPP:
    the DELIVER's Msg_Id)."""

    link: Any  # the link that read it (`Link`, or another protocol's)
    sequence: int
    detail: Any = False

    @property
    def bind(self) -> str:
        """The bind it came on (receipts are matched per bind)."""
        return self.link.name


@dataclass(slots=True)
class Received:
    """What one read of a link produced (in the order the SMSC sent it): for the layers above, and
    for the link's write side (`smsbot.outgoing`: `answered`, `owed`, `refused`)."""

    mos: list[tuple[Inbound, ReplyTo]] = field(default_factory=list)
    receipts: list[tuple[Receipt, ReplyTo]] = field(default_factory=list)
    submit_resps: list[tuple[int, int, str]] = field(default_factory=list)  # sequence, status, message id
    answered: list[int] = field(default_factory=list)  # sequences of our questions (enquire_link) answered
    owed: list[bytes] = field(default_factory=list)  # link-level answers for the write side to send
    refused: list[tuple[ReplyTo, int]] = field(default_factory=list)  # MOs/receipts the link answers itself
    down: str | None = None  # the link is dead (after what it read up to then): why


@dataclass(eq=False)
class Link:
    """One bound socket's read side: receiver, transmitter or both. What is SMPP's here is in the
    protocol methods (`_handle`, `_keepalive_answer`, `_goodbye_frames`); another protocol's link
    (`smsbot.cmpp_session`) overrides those and keeps the framing and the timers."""

    sock: socket.socket
    can_receive: bool
    can_transmit: bool
    name: str  # host:port/system_id and the bind kind: receipts are matched per bind
    framer: pdu.Framer = field(default_factory=pdu.Framer)
    last_pdu: float = field(default_factory=time.monotonic)
    enquire_sent_at: float | None = None  # the keepalive `check` asked for went out then, no PDU since
    partial_since: float | None = None  # an incomplete PDU started arriving then
    early: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # read with the bind response

    probe_name: ClassVar[str] = "enquire_link"  # the keepalive question, for the log

    @property
    def kind(self) -> str:
        """The bind's kind: transceiver, receiver or transmitter."""
        return "transceiver" if self.can_receive and self.can_transmit else "receiver" if self.can_receive else "transmitter"

    def replay(self) -> Received:
        """PDUs that arrived in the same read as the bind response (an SMSC may send MOs at once)."""
        early, self.early = self.early, []
        return self._handle(early, Received())

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending_tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def send_now(self, data: bytes) -> None:
        """Write now, while binding (the bound link's writes are `smsbot.outgoing`'s)."""
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise LinkDown(f"send failed: {e}") from None

    def _keepalive_answer(self, frame: tuple[int, int, int, bytes]) -> bytes | None:
        """The answer to `frame` when it is the SMSC's keepalive (enquire_link_resp), else None."""
        if frame[0] == CommandId.ENQUIRE_LINK:
            return pdu.encode_header(CommandId.ENQUIRE_LINK_RESP, 0, frame[2])
        return None

    def goodbye_read(self) -> Received:
        """After the goodbye (the write side's): read once; MOs and receipts still arriving are
        refused for now (`refused`: the SMSC delivers them again). `down` is set when the goodbye
        was answered or the SMSC closed."""
        got = Received()
        try:
            data = sockio.recv(self.sock, READ_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, socket.timeout):
            return got
        if not data:
            got.down = "SMSC closed the connection"
        elif self._goodbye_frames(self.framer.feed(data), got):
            got.down = "goodbye answered"
        return got

    def _goodbye_frames(self, frames: list[tuple[int, int, int, bytes]], got: Received) -> bool:
        answered = False
        for command_id, _st, seq, _b in frames:
            if command_id == CommandId.UNBIND_RESP:
                answered = True
            elif command_id in (_DELIVER_SM, _DATA_SM):
                got.refused.append((ReplyTo(self, seq, command_id == _DATA_SM), Status.RX_T_APPN))
        return answered

    def receive(self, during: str = "") -> list[tuple[int, int, int, bytes]] | None:
        """What the socket has, cut into PDUs (None: nothing there yet). LinkDown when the SMSC
        closed; `pdu.FramingError` (with the PDUs framed before the bad header) when the stream
        cannot be framed."""
        try:
            data = sockio.recv(self.sock, READ_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, socket.timeout):
            return None
        except OSError as e:
            raise LinkDown(f"recv failed{during}: {e}") from None
        if not data:
            raise LinkDown(f"SMSC closed the connection{during}")
        return self.framer.feed(data)

    def read(self, now: float) -> Received:
        """Read what the socket has; return what it holds for the layers above, and the answers the
        link-level PDUs get. A dead link is `Received.down`, after what was read before it."""
        got = Received()
        try:
            frames = self.receive()
        except pdu.FramingError as e:
            self._handle(e.pdus, got)  # submit_sm_resps among them count, or their submits go twice
            got.down = got.down or f"unframeable stream: {e}"
            return got
        except LinkDown as e:
            got.down = str(e)
            return got
        if frames is None:
            return got
        if frames:
            self.last_pdu = now
            self.enquire_sent_at = None
        if self.framer.buffered:
            if self.partial_since is None or frames:
                self.partial_since = now
        else:
            self.partial_since = None
        return self._handle(frames, got)

    def _handle(self, frames: list[tuple[int, int, int, bytes]], got: Received) -> Received:
        for command_id, status, seq, body in frames:
            if command_id == _DELIVER_SM or command_id == _DATA_SM:
                self._on_mo_pdu(command_id, seq, body, got)
            elif command_id == _SUBMIT_SM_RESP:
                got.submit_resps.append((seq, status, pdu.decode_submit_sm_resp(body) if status == 0 else ""))
            elif command_id == CommandId.ENQUIRE_LINK:
                got.owed.append(pdu.encode_header(CommandId.ENQUIRE_LINK_RESP, 0, seq))
            elif command_id == CommandId.ENQUIRE_LINK_RESP:
                got.answered.append(seq)
            elif command_id == CommandId.UNBIND:
                got.owed.append(pdu.encode_header(CommandId.UNBIND_RESP, 0, seq))
                got.down = "SMSC sent unbind"
                return got
            elif command_id == CommandId.GENERIC_NACK:
                got.submit_resps.append((seq, status or Status.RSYSERR, ""))
            elif command_id & 0x80000000:
                pass  # responses we do not wait for (unbind_resp outside drain, ...)
            else:
                _log.warning("pdu_unsupported", command_id=hex(command_id), sequence=seq)
                got.owed.append(pdu.encode_header(CommandId.GENERIC_NACK, Status.RINVCMDID, seq))
        return got

    def _on_mo_pdu(self, command_id: int, seq: int, body: bytes, got: Received) -> None:
        data_sm = command_id == _DATA_SM
        reply = ReplyTo(self, seq, data_sm)
        try:
            d: DeliverSm = pdu.decode_data_sm(seq, body) if data_sm else pdu.decode_deliver_sm(seq, body)
        except pdu.PduError as e:  # the same bytes will never decode: tell the SMSC not to retry
            _log.error("mo_rejected", reason=str(e), status="ESME_RX_P_APPN", pdu=pdu.redacted_hex(command_id, body))
            got.refused.append((reply, Status.RX_P_APPN))
            return
        try:
            if d.is_receipt:
                receipt = codec.parse_receipt(d)
                if receipt is None:
                    _log.warning("delivery_receipt_unparsable", pdu=pdu.redacted_hex(command_id, body))
                    got.refused.append((reply, Status.ROK))
                    return
                got.receipts.append((receipt, reply))
                return
            mo = codec.inbound_from_deliver_sm(d)
        except Exception as e:  # our bug, not the SMSC's: a later version may read it, so retry
            _log.error("mo_undecodable", reason=repr(e), status="ESME_RX_T_APPN", pdu=pdu.redacted_hex(command_id, body))
            got.refused.append((reply, Status.RX_T_APPN))
            return
        got.mos.append((mo, reply))

    def check(self, now: float, s: SmscSettings) -> bool:
        """Timers: LinkDown when the keepalive or a partial PDU is overdue; True when the link has
        been idle for `smsc.enquire_link_interval` and a keepalive is due (the write side sends it)."""
        if self.partial_since is not None and now - self.partial_since > s.response_timeout:
            raise LinkDown(f"a PDU did not complete within {s.response_timeout:g} s ({self.framer.buffered} octets buffered)")
        if self.enquire_sent_at is not None:
            if now - self.enquire_sent_at > s.response_timeout:
                raise LinkDown(f"{self.probe_name} unanswered")
        elif now - self.last_pdu > s.enquire_link_interval:
            self.enquire_sent_at = now
            return True
        return False

    def next_deadline(self, s: SmscSettings) -> float:
        """The monotonic time `check` next has something to do."""
        if self.enquire_sent_at is not None:
            t = self.enquire_sent_at + s.response_timeout
        else:
            t = self.last_pdu + s.enquire_link_interval
        if self.partial_since is not None:
            t = min(t, self.partial_since + s.response_timeout)
        return t

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # closing a broken socket: nothing more to do
            pass


def open_links(s: SmscSettings, sequences: SequenceGenerator) -> list[Link]:
    """Connect and bind every link `s.bind_mode` needs; LinkDown (with the reason) when one fails."""
    if s.bind_mode is BindMode.TRANSCEIVER:
        return [_bind(s, sequences, CommandId.BIND_TRANSCEIVER, True, True)]
    rx = _bind(s, sequences, CommandId.BIND_RECEIVER, True, False)
    try:
        return [rx, _bind(s, sequences, CommandId.BIND_TRANSMITTER, False, True)]
    except BaseException:
        rx.close()
        raise


def tls_context(s: SmscSettings) -> ssl.SSLContext:
    """Verifies the certificate and the host name (`smsc.host`) unless `smsc.tls_verify` is off;
    `smsc.tls_ca_file` adds a private CA to the system's."""
    ctx = ssl.create_default_context()
    if s.tls_ca_file:
        ctx.load_verify_locations(cafile=s.tls_ca_file)
    if not s.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(s: SmscSettings) -> socket.socket:
    """TCP (TLS when `smsc.tls`) to the SMSC; LinkDown naming the address when it fails."""
    try:
        sock = socket.create_connection((s.host, s.port), timeout=s.response_timeout)
    except OSError as e:
        raise LinkDown(f"cannot connect to {s.host}:{s.port}: {e}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not s.tls:
        return sock
    try:
        return tls_context(s).wrap_socket(sock, server_hostname=s.host)
    except (ssl.SSLError, OSError) as e:
        sock.close()
        raise LinkDown(f"TLS handshake with {s.host}:{s.port} failed: {e}") from None


def _bind(s: SmscSettings, sequences: SequenceGenerator, command_id: CommandId, rx: bool, tx: bool) -> Link:
    sock = connect(s)
    kind = command_id.name.lower()
    link = Link(sock, rx, tx, f"{s.host}:{s.port}/{s.system_id}", pdu.Framer(s.max_pdu_bytes))
    try:
        seq = sequences.next_sequence()
        link.send_now(pdu.encode_bind(command_id, seq, s.system_id, s.password, s.system_type))
        status = _await_bind_resp(link, _BIND_RESP[command_id], seq, s)
    except BaseException:
        link.close()
        raise
    if status != 0:
        link.close()
        raise LinkDown(f"{kind} refused: status {hex(status)}")
    sock.settimeout(s.response_timeout)  # reads follow select; a write may wait this long
    link.last_pdu = time.monotonic()
    return link


def _await_bind_resp(link: Link, resp_id: int, seq: int, s: SmscSettings) -> int:
    """Read until the bind's response (its status); answer enquire_link meanwhile; anything else waits."""
    command_id, status, _seq, _body = await_answer(
        link, s, "bind", lambda f: (f[0] == resp_id or f[0] == CommandId.GENERIC_NACK) and f[2] == seq)
    return status or (Status.RBINDFAIL if command_id == CommandId.GENERIC_NACK else 0)


def await_answer(link: Link, s: SmscSettings, during: str,
                 is_answer: Callable[[tuple[int, int, int, bytes]], bool]) -> tuple[int, int, int, bytes]:
    """Read `link` until the frame `is_answer` picks (the answer to a bind or a connect), within
    `smsc.response_timeout`; keepalives meanwhile are answered at once (`Link._keepalive_answer`); what
    came after the answer in the same read waits in `link.early` (`replay`)."""
    deadline = time.monotonic() + s.response_timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LinkDown(f"no answer to the {during} within {s.response_timeout:g} s")
        if not link.pending_tls():
            readable, _, _ = select.select([link.sock], [], [], left)
            if not readable:
                continue
        try:
            frames = link.receive(f" during {during}")
        except pdu.FramingError as e:
            raise LinkDown(f"unframeable stream during {during}: {e}") from None
        if frames is None:
            continue
        for i, frame in enumerate(frames):
            if is_answer(frame):
                link.early = frames[i + 1:]
                return frame
            answer = link._keepalive_answer(frame)
            if answer is not None:
                link.send_now(answer)
