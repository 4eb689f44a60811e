"""Lean SMPP 3.4 PDU codec for the hot path: framing, deliver_sm / data_sm / submit_sm and their
resps, binds, and a redacted hex dump for logging rejected PDUs.

This module owns the wire format and nothing else: bytes ⇄ (header, body) framing, and body ⇄
`smsbot.messages` dataclasses for the PDUs smsbot and its simulator exchange. It does not
interpret text, UDHs or receipts (that is `smsbot.codec`), and it never touches a socket.
A data_sm decodes to a `DeliverSm` (short_message empty, the text in the message_payload TLV)
so MOs and receipts carried by data_sm follow the deliver_sm path.

Everything here is a pure function over precompiled `struct.Struct`s and `bytes` formatting;
smpplib is not imported (it is the test oracle: the submit_sm, deliver_sm, bind and resp encoders
produce bytes identical to `smpplib.smpp.make_pdu(...).generate()` for the same field values,
including smpplib's quirks). Encoders are strict in what they send:

* integer fields are one octet each; 0 and 255 are written as-is (smpplib writes 0 as a NUL, which
  is the same octet); sequence numbers are unsigned 32-bit (0..0xFFFFFFFF);
* C-octet strings are latin-1 encoded, NUL-terminated, and silently truncated to `max - 1`
  characters like smpplib does (service_type 5, addresses 20 (data_sm: 64), message_id 64,
  system_id 15, password 8, system_type 12, address_range 40). Only a simulator playing a
  misbehaving SMSC asks for over-long fields (`encode_deliver_sm(..., truncate=False)`);
* schedule_delivery_time, validity_period, replace_if_present_flag, sm_default_msg_id are empty /
  zero (smsbot never sets them);
* TLVs are appended after the mandatory part in the order given. To be byte-identical with
  smpplib, give them in smpplib's `params_order` order (e.g. user_message_reference, sar_msg_ref_num,
  sar_total_segments, sar_segment_seqnum, message_payload ...).

Note for anyone using smpplib as the oracle: `make_pdu(..., sequence=n)` IGNORES `sequence` (the
property falls back to the client's counter); set `pdu.sequence = n` after construction.

Decoders are liberal in what they accept; a `PduError` only when a body cannot be read at all:

* a C-octet string may be of any length: its NUL may be anywhere before the end of the body
  (an 8-octet service_type, a 30-digit address, an over-long schedule/validity or system_id all
  decode); only a missing NUL before the end is a `PduError`, naming the field;
* the mandatory part cut short, or an sm_length running past the body, is a `PduError`;
* TLVs never make a PDU undecodable (`decode_tlvs`): every TLV, known or not (vendor tags
  0x1400-0x3FFF included), is kept raw in a dict and a repeated tag keeps the last value;
  1-3 trailing octets too short for a TLV header are ignored as padding; a TLV whose length
  runs past the body is dropped, the TLVs before it kept, and the loss noted (`tlv_problem`);
* resp bodies (`decode_submit_sm_resp`, `decode_bind_resp`) never raise: a missing NUL means
  the whole body, anything after the NUL is ignored.

The common case stays on a fast path (an empty service_type and empty times cost no `find`, a
body without TLVs no `decode_tlvs` call); tolerance lives in the slower branches.
"""

from __future__ import annotations

import dataclasses
import re
import struct

from smsbot.messages import CommandId, DeliverSm, SubmitSm, Tag

__all__ = [
    "MAX_PDU_LEN",
    "PduError",
    "FramingError",
    "Framer",
    "encode_header",
    "encode_submit_sm",
    "SubmitSmTemplate",
    "decode_submit_sm",
    "encode_submit_sm_resp",
    "decode_submit_sm_resp",
    "encode_deliver_sm",
    "decode_deliver_sm",
    "encode_deliver_sm_resp",
    "decode_data_sm",
    "encode_data_sm",
    "encode_data_sm_resp",
    "encode_bind",
    "decode_bind",
    "encode_bind_resp",
    "decode_bind_resp",
    "encode_tlvs",
    "decode_tlvs",
    "PartialTlvs",
    "tlv_problem",
    "sar_tlvs",
]

MAX_PDU_LEN = 65536
HEADER_LEN = 16

_HDR = struct.Struct(">IIII")
_HDR_NUL = struct.Struct(">IIIIB")  # header + a single NUL body (empty message_id)
_LEN = struct.Struct(">I")
_TL = struct.Struct(">HH")
_TLV_U8 = struct.Struct(">HHB")
_TLV_U16 = struct.Struct(">HHH")
_B5 = struct.Struct(">5B")

_SUBMIT_SM = int(CommandId.SUBMIT_SM)
_SUBMIT_SM_RESP = int(CommandId.SUBMIT_SM_RESP)
_DELIVER_SM = int(CommandId.DELIVER_SM)
_DELIVER_SM_RESP = int(CommandId.DELIVER_SM_RESP)
_DATA_SM = int(CommandId.DATA_SM)
_DATA_SM_RESP = int(CommandId.DATA_SM_RESP)
_T_MESSAGE_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)

# header + fixed octets of the submit_sm/deliver_sm body: 16 + NUL(service_type) + 2 + NUL(src)
# + 2 + NUL(dst) + 3 + NUL(schedule) + NUL(validity) + 5
_SM_FIXED = 16 + 17

# Header, then: service_type NUL src_ton src_npi source_addr NUL dst_ton dst_npi destination_addr
# NUL esm_class protocol_id priority_flag schedule(NUL) validity(NUL) registered_delivery
# replace_if_present(0) data_coding sm_default_msg_id(0) sm_length short_message TLVs
_SM_FMT = b"%b%b\0%c%c%b\0%c%c%b\0%c%c%c\0\0%c\0%c\0%c%b%b"
_SM_BODY_FMT = _SM_FMT[2:]  # the same without the header
_LEN_OCTET = [bytes((n,)) for n in range(256)]
_NO_MAX = 1 << 31  # a `_cstr` maximum that never truncates


class PduError(ValueError):
    """A PDU body that cannot be decoded (mandatory part cut short, a C-octet string without a
    NUL before the end of the body, sm_length past the body)."""


class FramingError(PduError):
    """The byte stream is unusable (command_length < 16 or > MAX_PDU_LEN): drop the connection.

    `pdus` holds the complete PDUs framed before the bad header in the same `feed()` call."""

    def __init__(self, msg: str, pdus: list[tuple[int, int, int, bytes]] | None = None) -> None:
        super().__init__(msg)
        self.pdus = pdus or []


# ---------------------------------------------------------------------------------------------
# framing


class Framer:
    """Cut a TCP byte stream into PDUs.

    `feed(data)` returns every complete PDU as (command_id, command_status, sequence_number, body)
    and keeps any partial PDU buffered. Work is linear in the bytes fed: complete PDUs are sliced
    directly out of `data` when nothing is buffered, and the buffer is compacted once per call.
    After a `FramingError` the framer stays broken (every later feed raises again). `max_len`:
    the largest command_length accepted (a larger one means a corrupt stream).

    SMPP's by default; another length-prefixed protocol passes its `header` (a `struct.Struct`
    unpacking to four values, the PDU's whole length first; its size is the shortest PDU; CMPP's
    12 octets pad a missing field with ``0s``) and the name of its length field for the error
    (`smsbot.cmpp.framing`). Each PDU is then the header's other three values and the body.
    """

    __slots__ = ("_buf", "_broken", "_max", "_unpack", "_hlen", "_length_name")

    def __init__(self, max_len: int = MAX_PDU_LEN, *, header: struct.Struct = _HDR,
                 length_name: str = "command_length") -> None:
        self._buf = bytearray()
        self._broken: str | None = None
        self._max = max_len
        self._unpack = header.unpack_from
        self._hlen = header.size
        self._length_name = length_name

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete PDU waiting for more data."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        if self._broken is not None:
            raise FramingError(self._broken)
        buf = self._buf
        if buf:
            buf += data
            src = memoryview(buf)
        else:
            src = data
        out: list[tuple[int, int, int, bytes]] = []
        n = len(src)
        off = 0
        unpack = self._unpack
        hlen = self._hlen
        maximum = self._max
        append = out.append
        copy = None if type(src) is bytes else bytes  # a slice of bytes is bytes; of the buffer (or a caller's bytearray), not
        try:
            while n - off >= hlen:
                length, cid, status, seq = unpack(src, off)
                if length < hlen or length > maximum:
                    self._fail(length, out)
                end = off + length
                if end > n:
                    break
                append((cid, status, seq, copy(src[off + hlen : end]) if copy else src[off + hlen : end]))
                off = end
            if 4 <= n - off < hlen:  # reject a bad length as soon as it is visible
                (length,) = _LEN.unpack_from(src, off)
                if length < hlen or length > maximum:
                    self._fail(length, out)
        finally:
            if src is not data:
                src.release()
        if src is data:
            if off < n:
                buf += data[off:]
        elif off:
            del buf[:off]
        return out

    def _fail(self, length: int, out: list) -> None:
        self._broken = f"bad {self._length_name} {length} (must be {self._hlen}..{self._max})"
        self._buf = bytearray()
        raise FramingError(self._broken, out)


def encode_header(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """A whole PDU: header + `body` (for enquire_link(_resp), unbind(_resp), generic_nack, ...)."""
    return _HDR.pack(16 + len(body), command_id, status, sequence) + body


# ---------------------------------------------------------------------------------------------
# helpers


def _cstr(value: str | None, maximum: int) -> bytes:
    """smpplib's _generate_string without the NUL: latin-1, truncated to maximum-1 chars."""
    if not value:
        return b""
    if len(value) >= maximum:
        value = value[: maximum - 1]
    return value.encode("latin-1")


def encode_tlvs(tlvs) -> bytes:
    """Encode (tag, value) pairs (a list of tuples or a dict) as TLVs, in order."""
    if not tlvs:
        return b""
    items = tlvs.items() if isinstance(tlvs, dict) else tlvs
    pack = _TL.pack
    return b"".join([pack(tag, len(v)) + v for tag, v in items])


def sar_tlvs(ref: int, total: int, seq: int) -> list[tuple[int, bytes]]:
    """sar_msg_ref_num (2 octets), sar_total_segments, sar_segment_seqnum, in smpplib's order."""
    return [(0x020C, ref.to_bytes(2, "big")), (0x020E, bytes((total,))), (0x020F, bytes((seq,)))]


class PartialTlvs(dict):
    """The TLVs `decode_tlvs` could read from a body whose last TLV ran past its end; that TLV
    is dropped and `problem` says which it was (for a log line). Otherwise a plain dict."""

    __slots__ = ("problem",)

    def __init__(self, tlvs: dict[int, bytes], problem: str) -> None:
        super().__init__(tlvs)
        self.problem = problem


def tlv_problem(tlvs: dict[int, bytes]) -> str | None:
    """Why TLVs were dropped while decoding (`PartialTlvs.problem`), None when none were."""
    return getattr(tlvs, "problem", None)


def decode_tlvs(body: bytes, pos: int = 0) -> dict[int, bytes]:
    """Every TLV from `pos` to the end of `body`, raw, in order (a repeated tag keeps the last
    value; unknown tags are kept). Never raises; liberal about a damaged tail:

    * 1-3 octets left after the last TLV (too short for a TLV header: padding some SMSCs send)
      are ignored;
    * a TLV whose length runs past the body is dropped, the TLVs before it are kept, and the
      result is a `PartialTlvs` whose `problem` names the dropped tag (`tlv_problem`)."""
    tlvs: dict[int, bytes] = {}
    n = len(body)
    unpack = _TL.unpack_from
    while pos + 4 <= n:
        tag, length = unpack(body, pos)
        pos += 4
        end = pos + length
        if end > n:
            return PartialTlvs(
                tlvs, f"TLV 0x{tag:04x} length {length} runs {end - n} octets past the body: dropped"
            )
        tlvs[tag] = body[pos:end]
        pos = end
    return tlvs


def _cfield(body: bytes, pos: int, name: str) -> tuple[str, int]:
    """The C-octet string at `pos` (any length: the NUL may be anywhere before the end of the
    body) and the offset after its NUL. PduError only when no NUL follows."""
    end = body.find(b"\0", pos)
    if end < 0:
        raise PduError(f"{name}: no NUL before the end of the body (offset {pos})")
    return body[pos:end].decode("latin-1"), end + 1


def _parse_sm(body: bytes):
    """Mandatory part of submit_sm/deliver_sm, then TLVs. Returns a flat tuple.

    C-octet strings may be of any length (the NUL anywhere before the end of the body); the
    usual case (empty service_type, both times empty) takes no `find` at all for those fields."""
    try:
        find = body.find
        if body[0] == 0:  # empty service_type: the usual case
            service_type = ""
            p = 1
        else:
            e = find(b"\0")
            if e < 0:
                raise PduError("service_type: no NUL before the end of the body")
            service_type = body[:e].decode("latin-1")
            p = e + 1
        src_ton = body[p]
        src_npi = body[p + 1]
        p += 2
        e = find(b"\0", p)
        if e < 0:
            raise PduError("source_addr: no NUL before the end of the body")
        source_addr = body[p:e].decode("latin-1")
        p = e + 1
        dst_ton = body[p]
        dst_npi = body[p + 1]
        p += 2
        e = find(b"\0", p)
        if e < 0:
            raise PduError("destination_addr: no NUL before the end of the body")
        destination_addr = body[p:e].decode("latin-1")
        p = e + 1
        esm_class = body[p]
        protocol_id = body[p + 1]
        priority_flag = body[p + 2]
        p += 3
        if body[p] == 0 and body[p + 1] == 0:  # both times empty: the usual case
            p += 2
        else:
            e = find(b"\0", p)
            if e < 0:
                raise PduError("schedule_delivery_time: no NUL before the end of the body")
            p = e + 1
            e = find(b"\0", p)
            if e < 0:
                raise PduError("validity_period: no NUL before the end of the body")
            p = e + 1
        registered_delivery, _replace, data_coding, _default_id, sm_length = _B5.unpack_from(body, p)
        p += 5
    except (IndexError, struct.error):
        raise PduError("body truncated in the mandatory fields") from None
    end = p + sm_length
    if end > len(body):
        raise PduError(f"sm_length {sm_length} runs past the body")
    short_message = body[p:end]
    tlvs = decode_tlvs(body, end) if end < len(body) else {}
    return (
        service_type, src_ton, src_npi, source_addr, dst_ton, dst_npi, destination_addr,
        esm_class, protocol_id, priority_flag, registered_delivery, data_coding, short_message, tlvs,
    )


# ---------------------------------------------------------------------------------------------
# submit_sm


def encode_submit_sm(sm: SubmitSm, sequence: int, tlvs: list[tuple[int, bytes]] | None = None) -> bytes:
    """A whole submit_sm PDU (header included), byte-identical to smpplib's for the same fields."""
    return submit_sm_with_sequence(encode_submit_sm_body(sm, tlvs), sequence)


def encode_submit_sm_body(sm: SubmitSm, tlvs: list[tuple[int, bytes]] | None = None) -> bytes:
    """The body of a submit_sm (all but the header): encoded once per part when the reply is
    queued; the sequence number is only known when the part goes out (`submit_sm_with_sequence`)."""
    svc = _cstr(sm.service_type, 6)
    src = _cstr(sm.source_addr, 21)
    dst = _cstr(sm.destination_addr, 21)
    msg = sm.short_message or b""
    n = len(msg)
    if n > 254:
        raise ValueError(f"short_message is {n} octets (max 254; use the message_payload TLV)")
    extra = encode_tlvs(tlvs) if tlvs else b""
    return _SM_BODY_FMT % (
        svc, sm.source_addr_ton, sm.source_addr_npi, src,
        sm.dest_addr_ton, sm.dest_addr_npi, dst,
        sm.esm_class, 0, 0, sm.registered_delivery, sm.data_coding, n, msg, extra,
    )


class SubmitSmTemplate:
    """The bodies of submit_sm PDUs that share every field but destination_addr and short_message
    (the replies from one short code with one data_coding and esm_class): the octets around
    destination_addr are encoded once, from `sm` (whose destination_addr and short_message are not
    used). `bodies` of a destination and the parts' short_messages are each equal to
    `encode_submit_sm_body` of `sm` with those fields."""

    __slots__ = ("_before", "_after")

    def __init__(self, sm: SubmitSm):
        body = encode_submit_sm_body(dataclasses.replace(sm, destination_addr="", short_message=b""))
        # service_type NUL, source ton npi, source_addr NUL, dest ton npi: where destination_addr goes
        at = len(_cstr(sm.service_type, 6)) + len(_cstr(sm.source_addr, 21)) + 6
        self._before = body[:at]  # ... dest_addr_ton dest_addr_npi
        self._after = body[at:-1]  # destination_addr's NUL ... sm_default_msg_id (without sm_length)

    def bodies(self, destination_addr: str, messages: list[bytes]) -> list[bytes]:
        head = self._before + _cstr(destination_addr, 21) + self._after
        out = []
        for m in messages:
            if len(m) > 254:
                raise ValueError(f"short_message is {len(m)} octets (max 254; use the message_payload TLV)")
            out.append(head + _LEN_OCTET[len(m)] + m)
        return out


def submit_sm_with_sequence(body: bytes, sequence: int) -> bytes:
    """A whole submit_sm PDU from its body (`encode_submit_sm_body`) and a sequence number."""
    return _HDR.pack(16 + len(body), _SUBMIT_SM, 0, sequence) + body


def decode_submit_sm(sequence: int, body: bytes) -> tuple[SubmitSm, dict[int, bytes]]:
    """submit_sm body → (SubmitSm, all TLVs raw). protocol_id/priority_flag are dropped."""
    (svc, ston, snpi, src, dton, dnpi, dst, esm, _pid, _prio, reg, dc, msg, tlvs) = _parse_sm(body)
    sm = SubmitSm(
        source_addr=src, destination_addr=dst, short_message=msg, data_coding=dc, esm_class=esm,
        source_addr_ton=ston, source_addr_npi=snpi, dest_addr_ton=dton, dest_addr_npi=dnpi,
        registered_delivery=reg, service_type=svc,
    )
    return sm, tlvs


def encode_submit_sm_resp(sequence: int, status: int, message_id: str) -> bytes:
    """submit_sm_resp with a NUL-terminated message_id (an empty id is a single NUL, like smpplib)."""
    mid = _cstr(message_id, 65)
    return _HDR.pack(17 + len(mid), _SUBMIT_SM_RESP, status, sequence) + mid + b"\0"


def decode_submit_sm_resp(body: bytes) -> str:
    """message_id of a submit_sm_resp body. Lenient: empty body → "", missing NUL → whole body."""
    return body.partition(b"\0")[0].decode("latin-1")


# ---------------------------------------------------------------------------------------------
# deliver_sm


def decode_deliver_sm(sequence: int, body: bytes) -> DeliverSm:
    """deliver_sm body → DeliverSm with every TLV raw in `tlvs` (never raises on unknown tags)."""
    (svc, ston, snpi, src, dton, dnpi, dst, esm, pid, prio, reg, dc, msg, tlvs) = _parse_sm(body)
    return DeliverSm(
        sequence, svc, ston, snpi, src, dton, dnpi, dst, esm, pid, prio, reg, dc, msg, tlvs,
    )


def encode_deliver_sm(pdu: DeliverSm, *, truncate: bool = True) -> bytes:
    """A whole deliver_sm PDU; `pdu.tlvs` appended in insertion order (values raw).

    `truncate=False` writes service_type and the addresses whole even beyond the spec's maximum
    (for a simulator that plays a misbehaving SMSC); smsbot itself never sends that."""
    n = 6 if truncate else _NO_MAX
    a = 21 if truncate else _NO_MAX
    svc = _cstr(pdu.service_type, n)
    src = _cstr(pdu.source_addr, a)
    dst = _cstr(pdu.destination_addr, a)
    msg = pdu.short_message or b""
    n = len(msg)
    if n > 254:
        raise ValueError(f"short_message is {n} octets (max 254; use the message_payload TLV)")
    extra = encode_tlvs(pdu.tlvs) if pdu.tlvs else b""
    length = _SM_FIXED + len(svc) + len(src) + len(dst) + n + len(extra)
    return _SM_FMT % (
        _HDR.pack(length, _DELIVER_SM, 0, pdu.sequence),
        svc, pdu.source_addr_ton, pdu.source_addr_npi, src,
        pdu.dest_addr_ton, pdu.dest_addr_npi, dst,
        pdu.esm_class, pdu.protocol_id, pdu.priority_flag, pdu.registered_delivery,
        pdu.data_coding, n, msg, extra,
    )


def encode_deliver_sm_resp(sequence: int, status: int = 0) -> bytes:
    """deliver_sm_resp: header + a single NUL (empty message_id), exactly as smpplib generates it."""
    return _HDR_NUL.pack(17, _DELIVER_SM_RESP, status, sequence, 0)


# ---------------------------------------------------------------------------------------------
# data_sm (SMPP 3.4 4.7.1): an MO carrier some SMSCs use instead of deliver_sm


def decode_data_sm(sequence: int, body: bytes) -> DeliverSm:
    """data_sm body → DeliverSm, so MOs and receipts carried by data_sm take the deliver_sm path.

    Mandatory part: service_type, source ton/npi/addr, dest ton/npi/addr, esm_class,
    registered_delivery, data_coding; then TLVs (the text is in message_payload). The result has
    short_message b"" and protocol_id / priority_flag 0; every TLV is in `tlvs`, so
    `DeliverSm.payload` is the message_payload."""
    try:
        if body[0] == 0:  # empty service_type: the usual case
            service_type = ""
            p = 1
        else:
            service_type, p = _cfield(body, 0, "service_type")
        src_ton = body[p]
        src_npi = body[p + 1]
        source_addr, p = _cfield(body, p + 2, "source_addr")
        dst_ton = body[p]
        dst_npi = body[p + 1]
        destination_addr, p = _cfield(body, p + 2, "destination_addr")
        esm_class = body[p]
        registered_delivery = body[p + 1]
        data_coding = body[p + 2]
        p += 3
    except IndexError:
        raise PduError("data_sm body truncated in the mandatory fields") from None
    tlvs = decode_tlvs(body, p) if p < len(body) else {}
    return DeliverSm(
        sequence, service_type, src_ton, src_npi, source_addr, dst_ton, dst_npi, destination_addr,
        esm_class, 0, 0, registered_delivery, data_coding, b"", tlvs,
    )


def encode_data_sm(d: DeliverSm, *, truncate: bool = True) -> bytes:
    """A whole data_sm PDU from a DeliverSm (for the simulator). The user data goes in the
    message_payload TLV: `d.tlvs` in insertion order, plus message_payload = `d.short_message`
    at the end when `d.tlvs` has none. protocol_id and priority_flag are not part of data_sm.
    service_type is cut to 5 characters and the addresses to 64 unless `truncate=False`."""
    n = 6 if truncate else _NO_MAX
    a = 65 if truncate else _NO_MAX
    svc = _cstr(d.service_type, n)
    src = _cstr(d.source_addr, a)
    dst = _cstr(d.destination_addr, a)
    tlvs = d.tlvs
    extra = encode_tlvs(tlvs) if tlvs else b""
    if not tlvs or _T_MESSAGE_PAYLOAD not in tlvs:
        msg = d.short_message or b""
        if len(msg) > 0xFFFF:
            raise ValueError(f"payload is {len(msg)} octets (max 65535)")
        extra += _TL.pack(_T_MESSAGE_PAYLOAD, len(msg)) + msg
    body = b"%b\0%c%c%b\0%c%c%b\0%c%c%c%b" % (
        svc, d.source_addr_ton, d.source_addr_npi, src, d.dest_addr_ton, d.dest_addr_npi, dst,
        d.esm_class, d.registered_delivery, d.data_coding, extra,
    )
    return _HDR.pack(16 + len(body), _DATA_SM, 0, d.sequence) + body


def encode_data_sm_resp(sequence: int, status: int = 0) -> bytes:
    """data_sm_resp: header + a single NUL (empty message_id), no TLVs."""
    return _HDR_NUL.pack(17, _DATA_SM_RESP, status, sequence, 0)


# ---------------------------------------------------------------------------------------------
# bind


def encode_bind(
    command_id: int,
    sequence: int,
    system_id: str,
    password: str,
    system_type: str = "",
    interface_version: int = 0x34,
    addr_ton: int = 0,
    addr_npi: int = 0,
    address_range: str = "",
) -> bytes:
    """bind_transmitter / bind_receiver / bind_transceiver (pass the command_id)."""
    body = b"%b\0%b\0%b\0%c%c%c%b\0" % (
        _cstr(system_id, 16), _cstr(password, 9), _cstr(system_type, 13),
        interface_version, addr_ton, addr_npi, _cstr(address_range, 41),
    )
    return _HDR.pack(16 + len(body), command_id, 0, sequence) + body


def decode_bind(body: bytes) -> dict:
    """bind_* body → {system_id, password, system_type, interface_version, addr_ton, addr_npi,
    address_range}. PduError when the body ends before a field or its NUL; a string of any
    length is accepted up to its NUL; trailing octets (TLVs) are ignored."""
    try:
        system_id, p = _cfield(body, 0, "system_id")
        password, p = _cfield(body, p, "password")
        system_type, p = _cfield(body, p, "system_type")
        interface_version, addr_ton, addr_npi = body[p], body[p + 1], body[p + 2]
        address_range, p = _cfield(body, p + 3, "address_range")
    except IndexError:
        raise PduError("bind body truncated") from None
    return {
        "system_id": system_id,
        "password": password,
        "system_type": system_type,
        "interface_version": interface_version,
        "addr_ton": addr_ton,
        "addr_npi": addr_npi,
        "address_range": address_range,
    }


def encode_bind_resp(
    command_id: int, status: int, sequence: int, system_id: str, sc_interface_version: int | None = None
) -> bytes:
    """bind_*_resp: system_id, plus the sc_interface_version TLV (0x0210) when given."""
    body = _cstr(system_id, 16) + b"\0"
    if sc_interface_version is not None:
        body += _TLV_U8.pack(0x0210, 1, sc_interface_version)
    return _HDR.pack(16 + len(body), command_id, status, sequence) + body


def decode_bind_resp(body: bytes) -> str:
    """system_id of a bind_*_resp body. Lenient: empty body → "", missing NUL → the whole body;
    TLVs after the NUL (sc_interface_version, vendor tags) are ignored."""
    end = body.find(b"\0")
    return (body if end < 0 else body[:end]).decode("latin-1")


# ---------------------------------------------------------------------------------------------
# logging rejected PDUs

_MASK = 0x2A  # '*'
_ADDRESSED = frozenset((_DELIVER_SM, _SUBMIT_SM, _DATA_SM))
_BINDS = frozenset((int(CommandId.BIND_RECEIVER), int(CommandId.BIND_TRANSMITTER), int(CommandId.BIND_TRANSCEIVER)))
# 5+ digits: ASCII, or as UTF-16-BE units (ASCII digits 00 3x, full-width digits FF 1x)
_DIGIT_RUN = re.compile(rb"[0-9]{5,}|(?:\x00[0-9]|\xff[\x10-\x19]){5,}")


def _address_spans(body: bytearray) -> list[tuple[int, int]] | None:
    """(start, end) of source_addr and destination_addr in a deliver_sm/submit_sm/data_sm body
    (the same leading layout in all three), None when the layout cannot be followed."""
    find = body.find
    e = find(b"\0")
    if e < 0:
        return None
    src = e + 3  # after service_type's NUL, source ton and npi
    src_end = find(b"\0", src)
    if src_end < 0:
        return None
    dst = src_end + 3
    dst_end = find(b"\0", dst)
    if dst_end < 0:
        return None
    return [(src, src_end), (dst, dst_end)]


def redacted_hex(command_id: int, body: bytes) -> str:
    """`body` as lowercase hex for a log line, with no phone number in it.

    deliver_sm / submit_sm / data_sm: every digit of source_addr and destination_addr except
    the LAST TWO becomes '*' (0x2A), so `8613912345678` reads `***********78`. bind_*: the
    password becomes '*'s (the whole body when it has no NUL). Then, in every body (and alone in one whose layout cannot be
    followed), every run of 5 or more digits becomes '*'s: ASCII digits, and digits written as
    UTF-16-BE units (00 3x, full-width FF 1x), so numbers in a text or receipt are masked too.
    Masked octets keep their place and count, so the hex still frames and parses like the
    original; only digit octets change. Never raises."""
    data = bytearray(body)
    try:
        cid = int(command_id)
        if cid in _ADDRESSED:
            for start, end in _address_spans(data) or ():
                seen = 0
                for i in range(end - 1, start - 1, -1):
                    if 0x30 <= data[i] <= 0x39:
                        seen += 1
                        if seen > 2:
                            data[i] = _MASK
        elif cid in _BINDS:  # system_id NUL password NUL ...; no NUL at all: mask everything
            start = data.find(b"\0") + 1
            end = data.find(b"\0", start) if start else -1
            if end < 0:
                end = len(data)
            data[start:end] = b"*" * (end - start)
    except (TypeError, ValueError):
        pass
    data = _DIGIT_RUN.sub(lambda m: b"*" * len(m.group()), data)
    return data.hex()
