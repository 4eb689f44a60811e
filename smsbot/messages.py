"""Message dataclasses that flow through smsbot: what came in (MO), what goes out (MT), receipts.

This module owns only shapes and enums; it does no I/O and no encoding. `smsbot.pdu` turns
bytes into `DeliverSm` and `SubmitSm` into bytes; `smsbot.codec` turns `DeliverSm` payloads into
text and text into `SubmitSm` parts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class DataCoding(enum.IntEnum):
    """SMPP 3.4 data_coding values smsbot understands."""

    DEFAULT = 0  # SMSC default alphabet; smsbot treats it as unpacked GSM 03.38
    IA5 = 1  # IA5 / ASCII
    BINARY_2 = 2
    LATIN1 = 3
    BINARY = 4
    UCS2 = 8


class EsmClass(enum.IntFlag):
    DEFAULT = 0x00
    DELIVERY_RECEIPT = 0x04
    UDHI = 0x40


class CommandId(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class Status(enum.IntEnum):
    """command_status values smsbot sends or reacts to."""

    ROK = 0x00000000
    RINVMSGLEN = 0x00000001
    RINVCMDLEN = 0x00000002
    RINVCMDID = 0x00000003
    RINVBNDSTS = 0x00000004
    RALYBND = 0x00000005
    RSYSERR = 0x00000008
    RBINDFAIL = 0x0000000D
    RINVPASWD = 0x0000000E
    RINVSYSID = 0x0000000F
    RMSGQFUL = 0x00000014
    RINVDSTADR = 0x0000000B
    RTHROTTLED = 0x00000058
    RX_T_APPN = 0x00000064  # temporary app error: SMSC should redeliver later
    RX_P_APPN = 0x00000065  # permanent app error: SMSC should not redeliver
    RX_R_APPN = 0x00000066


class Tag(enum.IntEnum):
    """TLV tags smsbot reads or writes."""

    RECEIPTED_MESSAGE_ID = 0x001E
    USER_MESSAGE_REFERENCE = 0x0204
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    MESSAGE_PAYLOAD = 0x0424
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_STATE = 0x0427


_T_MESSAGE_PAYLOAD = int(Tag.MESSAGE_PAYLOAD)


def _nul_mode(dc: int) -> int:
    """0: binary, keep NULs; 1: 8-bit/7-bit text, strip NUL octets; 2: UCS-2, strip whole units."""
    if dc in (2, 4):
        return 0
    if dc == 8 or 0xE0 <= dc <= 0xEF:
        return 2
    if 0x10 <= dc <= 0x3F and not dc & 0x20:  # general data coding group, uncompressed
        return (1, 0, 2, 1)[(dc >> 2) & 3]  # alphabet: GSM-7, 8-bit data, UCS-2, reserved
    if dc >= 0xF0:
        return 0 if dc & 0x04 else 1
    return 1


_NUL_MODES = bytes(_nul_mode(dc) for dc in range(256))


def strip_trailing_nuls(data_coding: int, data: bytes) -> bytes:
    """`data` without the trailing NUL padding some SMSCs append to message_payload.

    Binary codings (2, 4 and the GSM DCS 8-bit classes) are returned unchanged. UCS-2 (8 and the
    DCS UCS-2 groups) loses a trailing odd NUL octet, then whole U+0000 units, so a character
    such as U+0100 (01 00) is never cut. Every other coding loses all trailing NUL octets (in
    GSM-7 a NUL is '@', so a text ending in '@' loses it: padding is the likelier reading)."""
    mode = _NUL_MODES[data_coding] if 0 <= data_coding <= 255 else 1
    if mode == 1:
        return data.rstrip(b"\0")
    if mode == 0:
        return data
    n = len(data)
    if n & 1 and data[-1] == 0:
        n -= 1
    while n >= 2 and data[n - 1] == 0 and data[n - 2] == 0:
        n -= 2
    return data[:n]


@dataclass(slots=True)
class DeliverSm:
    """A decoded deliver_sm PDU (MO or delivery receipt), bytes untouched.

    `tlvs` maps every TLV tag present (known or vendor-specific) to its raw value bytes.
    """

    sequence: int
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    short_message: bytes = b""
    tlvs: dict[int, bytes] = field(default_factory=dict)

    @property
    def is_receipt(self) -> bool:
        return bool(self.esm_class & 0x04)  # EsmClass.DELIVERY_RECEIPT; a plain int is 10x cheaper here

    @property
    def payload(self) -> bytes:
        """The user data: message_payload TLV when present, else short_message (untouched).

        Trailing NUL octets of a message_payload are padding some SMSCs add (`0000\\0`) and are
        stripped (`strip_trailing_nuls`); short_message is returned as it came."""
        mp = self.tlvs.get(_T_MESSAGE_PAYLOAD)
        if mp is None:
            return self.short_message
        if mp and mp[-1] == 0:
            return strip_trailing_nuls(self.data_coding, mp)
        return mp


@dataclass(slots=True)
class SubmitSm:
    """One submit_sm to encode (one part of an MT)."""

    source_addr: str
    destination_addr: str
    short_message: bytes
    data_coding: int = DataCoding.UCS2
    esm_class: int = 0
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1
    registered_delivery: int = 0
    service_type: str = ""


@dataclass(slots=True)
class Segment:
    """Concatenation info of one part of a long message (from UDH or sar_* TLVs)."""

    ref: int
    total: int
    seq: int


@dataclass(slots=True)
class Inbound:
    """A mobile-originated text after decoding, ready for dispatch (possibly one part of a long MO).

    For a part of a long MO, `text` is decoded from that part alone and may be wrong at the cut
    (a GSM-7 escape or a UTF-16 surrogate pair split across parts): keep `payload` and join the
    parts with `smsbot.codec.join_parts(data_coding, payloads)`, which decodes once."""

    msisdn: str  # subscriber (source_addr)
    short_code: str  # destination_addr
    text: str  # decoded text of this PDU (only this part when `segment` is set)
    sequence: int  # deliver_sm sequence number, for the resp
    segment: Segment | None = None
    user_message_reference: int | None = None
    payload: bytes = b""  # raw user data of this PDU/part, UDH stripped, NUL padding stripped
    data_coding: int = 0  # the PDU's data_coding, to decode `payload`
    reply_to: str = ""  # the source_addr as the SMSC sent it, when it differs from `msisdn` (the key)


@dataclass(slots=True)
class Receipt:
    """A delivery receipt parsed from a deliver_sm (TLV or `id:... stat:...` text form)."""

    message_id: str
    state: str  # DELIVRD, UNDELIV, EXPIRED, ...
    error: str = ""
