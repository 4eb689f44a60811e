"""CMPP PDUs ⇄ bytes, for 3.0 and 2.0: strict in what it writes, liberal in what it reads.

`encode(pdu, sequence, version)` writes a whole PDU (header included); `decode(command_id, body,
version)` reads a body framed by `smsbot.cmpp.framing`. `version` is the connection's (what the
CONNECT asked for); the layout it selects is `smsbot.cmpp.fields.layout`'s.

Writing: every octet string exactly its width, NUL-padded; every value must fit (a `ValueError`
naming the field otherwise); 2.0 refuses values its layout has no room for (a terminal type, a
LinkID); a fee must pass `Fee.problem`; Msg_Content at most 159 octets for Msg_Fmt 0 and 140 for
the others, as the specification says.

Reading — only what can never be read is a `CmppError` (a fixed field cut short, a status report
too short for either layout):
* octet strings padded with NUL or spaces alike (`fields.text_of`);
* a Msg_Length that disagrees with the body: the body wins. Msg_Content is what lies between
  Msg_Length and the trailing LinkID / Reserve; a body that ends right after Msg_Length octets has
  no trailer; one shorter than the trailer is all content;
* a response (CONNECT_RESP, SUBMIT_RESP, DELIVER_RESP) whose body has exactly the other version's
  length is read with that version's widths (a gateway answering 2.0 on a 3.0 connection);
* a status report read by its length (71 octets: 3.0, 60: 2.0), else by the connection's layout;
  a DELIVER with any non-zero Registered_Delivery carries one;
* an unknown Msg_Fmt, Result or Stat is kept as it came; octets after the last field are ignored;
* a command this codec does not model is returned as `Unknown` with its body.
"""

from __future__ import annotations

from .constants import CommandId
from .errors import CmppError
from .fee import Fee
from .fields import V20, V30, Layout, Reader, Writer, layout, text_of
from .framing import encode_header
from .messages import (
    ActiveTest, ActiveTestResp, Connect, ConnectResp, Deliver, DeliverResp, Pdu, StatusReport, Submit, SubmitResp,
    Terminate, TerminateResp, Unknown,
)

MAX_DESTINATIONS = 100  # DestUsr_tl
MAX_CONTENT_ASCII = 159  # Msg_Fmt 0: "less than 160 octets"
MAX_CONTENT = 140  # every other Msg_Fmt
SUBMIT_PK_NUMBER_AT = 9  # Msg_Id 8, Pk_total 1, then Pk_number


def submit_dest_at(version: int) -> int:
    """Where DestUsr_tl is in a SUBMIT body of `version` (the first Dest_terminal_Id follows it):
    every field before it has a fixed width, so a reader or writer of one field may go straight there."""
    lay = layout(version)
    return (8 + 1 + 1 + 1 + 1 + 10 + 1 + lay.terminal_id + (1 if lay.terminal_types else 0)  # Msg_Id .. Fee_terminal_type
            + 1 + 1 + 1 + 6 + 2 + 6 + 17 + 17 + 21)  # TP_pId .. Src_Id


def encode(pdu: Pdu, sequence: int, version: int) -> bytes:
    """The whole PDU (header + body) for a connection speaking `version`."""
    if isinstance(pdu, Unknown):
        return encode_header(pdu.command_id, sequence, pdu.body)
    return encode_header(pdu.COMMAND, sequence, encode_body(pdu, version))


def encode_body(pdu: Pdu, version: int) -> bytes:
    lay = layout(version)
    w = Writer()
    if isinstance(pdu, Submit):
        _write_submit(w, pdu, lay)
    elif isinstance(pdu, Deliver):
        _write_deliver(w, pdu, lay)
    elif isinstance(pdu, (SubmitResp, DeliverResp)):
        w.uint("Msg_Id", pdu.msg_id, 8)
        w.uint("Result", pdu.result, lay.result)
    elif isinstance(pdu, Connect):
        w.octets("Source_Addr", pdu.source_addr, 6)
        w.raw("AuthenticatorSource", pdu.authenticator, 16)
        w.uint("Version", pdu.version, 1)
        w.uint("Timestamp", pdu.timestamp, 4)
    elif isinstance(pdu, ConnectResp):
        w.uint("Status", pdu.status, lay.result)
        w.raw("AuthenticatorISMG", pdu.authenticator, 16)
        w.uint("Version", pdu.version, 1)
    elif isinstance(pdu, ActiveTestResp):
        w.uint("Reserved", pdu.reserved, 1)
    elif isinstance(pdu, (ActiveTest, Terminate, TerminateResp)):
        pass
    elif isinstance(pdu, Unknown):
        w.raw("body", pdu.body)
    else:
        raise TypeError(f"not a CMPP PDU: {pdu!r}")
    return w.getvalue()


def _only_30(lay: Layout, name: str, value: object, default: object) -> None:
    if lay is V20 and value != default:
        raise ValueError(f"CMPP 2.0 has no {name} (got {value!r})")


def _write_content(w: Writer, msg_fmt: int, content: bytes) -> None:
    limit = MAX_CONTENT_ASCII if msg_fmt == 0 else MAX_CONTENT
    if len(content) > limit:
        raise ValueError(f"Msg_Content of {len(content)} octets is longer than {limit} (Msg_Fmt {msg_fmt})")
    w.uint("Msg_Length", len(content), 1)
    w.raw("Msg_Content", content)


def _write_tail(w: Writer, lay: Layout, link_id: str) -> None:
    _only_30(lay, "LinkID", link_id, "")
    w.octets("LinkID", link_id, lay.tail)


def _write_submit(w: Writer, s: Submit, lay: Layout) -> None:
    problem = s.fee.problem()
    if problem:
        raise ValueError(problem)
    if not 1 <= s.pk_number <= s.pk_total:
        raise ValueError(f"Pk_number {s.pk_number} is not within 1..Pk_total ({s.pk_total})")
    if not 1 <= len(s.dest_terminal_ids) <= MAX_DESTINATIONS:
        raise ValueError(f"{len(s.dest_terminal_ids)} destinations (1..{MAX_DESTINATIONS})")
    if s.tp_udhi not in (0, 1):
        raise ValueError(f"TP_udhi {s.tp_udhi} is not 0 or 1")
    _only_30(lay, "Fee_terminal_type", s.fee.terminal_type, 0)
    _only_30(lay, "Dest_terminal_type", s.dest_terminal_type, 0)
    w.uint("Msg_Id", s.msg_id, 8)
    w.uint("Pk_total", s.pk_total, 1)
    w.uint("Pk_number", s.pk_number, 1)
    w.uint("Registered_Delivery", s.registered_delivery, 1)
    w.uint("Msg_level", s.msg_level, 1)
    w.octets("Service_Id", s.service_id, 10)
    w.uint("Fee_UserType", s.fee.user_type, 1)
    w.octets("Fee_terminal_Id", s.fee.terminal_id, lay.terminal_id)
    if lay.terminal_types:
        w.uint("Fee_terminal_type", s.fee.terminal_type, 1)
    w.uint("TP_pId", s.tp_pid, 1)
    w.uint("TP_udhi", s.tp_udhi, 1)
    w.uint("Msg_Fmt", s.msg_fmt, 1)
    w.octets("Msg_src", s.msg_src, 6)
    w.octets("FeeType", s.fee.fee_type, 2)
    w.octets("FeeCode", s.fee.fee_code, 6)
    w.octets("ValId_Time", s.valid_time, 17)
    w.octets("At_Time", s.at_time, 17)
    w.octets("Src_Id", s.src_id, 21)
    w.uint("DestUsr_tl", len(s.dest_terminal_ids), 1)
    for dest in s.dest_terminal_ids:
        w.octets("Dest_terminal_Id", dest, lay.terminal_id)
    if lay.terminal_types:
        w.uint("Dest_terminal_type", s.dest_terminal_type, 1)
    _write_content(w, s.msg_fmt, s.msg_content)
    _write_tail(w, lay, s.link_id)


def encode_report(r: StatusReport, version: int) -> bytes:
    """The Msg_Content of a status report."""
    lay = layout(version)
    w = Writer()
    w.uint("Msg_Id", r.msg_id, 8)
    w.octets("Stat", r.stat, 7)
    w.octets("Submit_time", r.submit_time, 10)
    w.octets("Done_time", r.done_time, 10)
    w.octets("Dest_terminal_Id", r.dest_terminal_id, lay.terminal_id)
    w.uint("SMSC_sequence", r.smsc_sequence, 4)
    return w.getvalue()


def _write_deliver(w: Writer, d: Deliver, lay: Layout) -> None:
    if d.tp_udhi not in (0, 1):
        raise ValueError(f"TP_udhi {d.tp_udhi} is not 0 or 1")
    _only_30(lay, "Src_terminal_type", d.src_terminal_type, 0)
    content = d.msg_content if d.report is None else encode_report(d.report, lay.version)
    w.uint("Msg_Id", d.msg_id, 8)
    w.octets("Dest_Id", d.dest_id, 21)
    w.octets("Service_Id", d.service_id, 10)
    w.uint("TP_pid", d.tp_pid, 1)
    w.uint("TP_udhi", d.tp_udhi, 1)
    w.uint("Msg_Fmt", d.msg_fmt, 1)
    w.octets("Src_terminal_Id", d.src_terminal_id, lay.terminal_id)
    if lay.terminal_types:
        w.uint("Src_terminal_type", d.src_terminal_type, 1)
    w.uint("Registered_Delivery", d.registered_delivery, 1)
    _write_content(w, d.msg_fmt, content)
    _write_tail(w, lay, d.link_id)


# ---------------------------------------------------------------------------------------------
# reading

_RESP_LENGTHS = {CommandId.CONNECT_RESP: (V30.result + 17, V20.result + 17),
                 CommandId.SUBMIT_RESP: (8 + V30.result, 8 + V20.result),
                 CommandId.DELIVER_RESP: (8 + V30.result, 8 + V20.result)}


def _resp_layout(command_id: int, body: bytes, lay: Layout) -> Layout:
    v30, v20 = _RESP_LENGTHS[command_id]
    if len(body) == v30:
        return V30
    if len(body) == v20:
        return V20
    return lay


def decode(command_id: int, body: bytes, version: int) -> Pdu:
    """The PDU in `body` (a frame's body) read on a connection speaking `version`."""
    lay = layout(version)
    if command_id == CommandId.DELIVER:
        return _read_deliver(body, lay)
    if command_id == CommandId.SUBMIT:
        return _read_submit(body, lay)
    if command_id == CommandId.SUBMIT_RESP or command_id == CommandId.DELIVER_RESP:
        width = _resp_layout(command_id, body, lay).result
        cls = SubmitResp if command_id == CommandId.SUBMIT_RESP else DeliverResp
        if len(body) >= 8 + width:  # two per MT part: read straight, not field by field
            return cls(int.from_bytes(body[:8], "big"), int.from_bytes(body[8:8 + width], "big"))
        r = Reader(body, f"CMPP_{CommandId(command_id).name}")  # cut short: its error names the field
        return cls(r.uint("Msg_Id", 8), r.uint("Result", width))
    if command_id == CommandId.ACTIVE_TEST:
        return ActiveTest()
    if command_id == CommandId.ACTIVE_TEST_RESP:
        return ActiveTestResp(body[0] if body else 0)
    if command_id == CommandId.CONNECT:
        r = Reader(body, "CMPP_CONNECT")
        return Connect(r.octets("Source_Addr", 6), r.raw("AuthenticatorSource", 16), r.uint("Version", 1),
                       r.uint("Timestamp", 4))
    if command_id == CommandId.CONNECT_RESP:
        r = Reader(body, "CMPP_CONNECT_RESP")
        width = _resp_layout(command_id, body, lay).result
        return ConnectResp(r.uint("Status", width), r.raw("AuthenticatorISMG", 16), r.uint("Version", 1))
    if command_id == CommandId.TERMINATE:
        return Terminate()
    if command_id == CommandId.TERMINATE_RESP:
        return TerminateResp()
    return Unknown(command_id, bytes(body))


def _content(r: Reader, declared: int, tail: int) -> tuple[bytes, bytes]:
    """(Msg_Content, trailer) from what follows Msg_Length, the body winning over `declared`."""
    rest = r.rest()
    n = len(rest)
    if n == declared + tail:
        return rest[:declared], rest[declared:]
    if n == declared or n < tail:
        return rest, b""
    return rest[:n - tail], rest[n - tail:]


def _read_submit(body: bytes, lay: Layout) -> Submit:
    r = Reader(body, "CMPP_SUBMIT")
    msg_id = r.uint("Msg_Id", 8)
    pk_total = r.uint("Pk_total", 1)
    pk_number = r.uint("Pk_number", 1)
    registered = r.uint("Registered_Delivery", 1)
    level = r.uint("Msg_level", 1)
    service_id = r.octets("Service_Id", 10)
    fee_user_type = r.uint("Fee_UserType", 1)
    fee_terminal_id = r.octets("Fee_terminal_Id", lay.terminal_id)
    fee_terminal_type = r.uint("Fee_terminal_type", 1) if lay.terminal_types else 0
    tp_pid = r.uint("TP_pId", 1)
    tp_udhi = r.uint("TP_udhi", 1)
    msg_fmt = r.uint("Msg_Fmt", 1)
    msg_src = r.octets("Msg_src", 6)
    fee_type = r.octets("FeeType", 2)
    fee_code = r.octets("FeeCode", 6)
    valid_time = r.octets("ValId_Time", 17)
    at_time = r.octets("At_Time", 17)
    src_id = r.octets("Src_Id", 21)
    count = r.uint("DestUsr_tl", 1)
    dests = [r.octets("Dest_terminal_Id", lay.terminal_id) for _ in range(count)]
    dest_type = r.uint("Dest_terminal_type", 1) if lay.terminal_types else 0
    content, tail = _content(r, r.uint("Msg_Length", 1), lay.tail)
    return Submit(
        dest_terminal_ids=dests, msg_content=content, msg_fmt=msg_fmt, src_id=src_id, msg_src=msg_src,
        service_id=service_id, fee=Fee(fee_type, fee_code, fee_user_type, fee_terminal_id, fee_terminal_type),
        registered_delivery=registered, pk_total=pk_total, pk_number=pk_number, tp_udhi=tp_udhi, tp_pid=tp_pid,
        msg_level=level, valid_time=valid_time, at_time=at_time, dest_terminal_type=dest_type,
        link_id=text_of(tail) if lay.terminal_types else "", msg_id=msg_id,
    )


def decode_report(content: bytes, version: int) -> StatusReport:
    """A status report from a DELIVER's Msg_Content (see the module docstring for its layout)."""
    if len(content) == V30.report_len:
        lay = V30
    elif len(content) == V20.report_len:
        lay = V20
    else:
        lay = layout(version)
        if len(content) < lay.report_len:
            raise CmppError(f"status report of {len(content)} octets: expected {V30.report_len} (3.0) "
                            f"or {V20.report_len} (2.0)")
    r = Reader(content, "status report")
    return StatusReport(r.uint("Msg_Id", 8), r.octets("Stat", 7), r.octets("Submit_time", 10),
                        r.octets("Done_time", 10), r.octets("Dest_terminal_Id", lay.terminal_id),
                        r.uint("SMSC_sequence", 4))


def _read_deliver(body: bytes, lay: Layout) -> Deliver:
    r = Reader(body, "CMPP_DELIVER")
    msg_id = r.uint("Msg_Id", 8)
    dest_id = r.octets("Dest_Id", 21)
    service_id = r.octets("Service_Id", 10)
    tp_pid = r.uint("TP_pid", 1)
    tp_udhi = r.uint("TP_udhi", 1)
    msg_fmt = r.uint("Msg_Fmt", 1)
    src = r.octets("Src_terminal_Id", lay.terminal_id)
    src_type = r.uint("Src_terminal_type", 1) if lay.terminal_types else 0
    registered = r.uint("Registered_Delivery", 1)
    content, tail = _content(r, r.uint("Msg_Length", 1), lay.tail)
    report = decode_report(content, lay.version) if registered else None
    return Deliver(msg_id=msg_id, dest_id=dest_id, src_terminal_id=src, msg_content=content, msg_fmt=msg_fmt,
                   service_id=service_id, tp_pid=tp_pid, tp_udhi=tp_udhi, src_terminal_type=src_type,
                   link_id=text_of(tail) if lay.terminal_types else "", report=report)
