"""Profiles of the simulated SMSC: how it behaves on the wire, flag by flag.

The ``default`` profile is the tidy SMSC the suite grew up with. The ``field`` profile behaves
like SMSCs met in the field (issue 10), each behaviour a flag that can be switched on its own:

=========================  =================  ======================================================
flag                       field              what
=========================  =================  ======================================================
user_message_reference     false              MOs carry the handset's TP-MR (0x0204); most SMSCs don't
service_type               ``"CMT_FLD8"``     service_type of every deliver_sm / data_sm, written as is
                                              (8 octets: longer than the spec's 6, never truncated)
sequence_start             0xFFFFFFF0         first sequence number of each bind (SMSC-originated PDUs)
sequence_max               0xFFFFFFFF         the highest one before wrapping to 1 (the spec: 0x7FFFFFFF)
payload_tlv                true               single-part MOs carry their text in message_payload
                                              (short_message empty)
payload_nul                true               ... followed by a NUL (one octet; U+0000 for UCS-2)
data_sm_every              3                  every Nth single-part MO goes as data_sm (expects
                                              data_sm_resp); 0 never
receipt_data_coding        8                  data_coding of receipts, whose text stays ASCII
receipt_tlvs               false              receipts carry receipted_message_id + message_state
message_id_cycle           16                 message ids count 1..N then start again (reused ids);
                                              0: every id unique
receipt_outcomes           {}                 ``{MSISDN: "STATE" or "STATE:ERR"}``: receipts of MTs
                                              to MSISDN say that (default DELIVRD, err 000)
international_source       true               MOs come from the country code and the number under
                                              TON 1 (``8613800138000``); else the national number
                                              under TON 2
=========================  =================  ======================================================

A partial PDU (header announcing 60,000 octets, a short body, then silence) is an action, not a
flag: `SimSmsc.send_partial` / ``POST /partial``.

The encoders here are the simulator's own (not `smsbot.pdu`'s, which truncates C-octet strings
to the spec's maxima like smpplib does): a field SMSC writes what it writes.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any

from smsbot.messages import CommandId, DataCoding, DeliverSm, Tag

SEQ_SPEC_MAX = 0x7FFFFFFF
SEQ_WIRE_MAX = 0xFFFFFFFF

# message_state TLV values (SMPP 3.4 5.3.2.35) by receipt stat: word
MESSAGE_STATES = {
    "ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8,
}
CARRIERS = ("deliver_sm", "data_sm")


class ProfileError(ValueError):
    """An unknown profile or flag, or a flag value of the wrong kind."""


@dataclass
class Behaviour:
    """What the simulated SMSC does on the wire (see the module doc for each flag)."""

    user_message_reference: bool = True
    service_type: str = ""
    sequence_start: int = 1
    sequence_max: int = SEQ_SPEC_MAX
    payload_tlv: bool = False
    payload_nul: bool = False
    data_sm_every: int = 0
    receipt_data_coding: int = 0
    receipt_tlvs: bool = True
    message_id_cycle: int = 0
    receipt_outcomes: dict[str, str] = field(default_factory=dict)
    international_source: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def receipt_outcome(self, msisdn: str) -> tuple[str, str]:
        """(stat, err) of receipts of MTs to `msisdn`."""
        raw = self.receipt_outcomes.get(msisdn)
        if not raw:
            return "DELIVRD", "000"
        stat, _, err = raw.partition(":")
        return stat, err or ("000" if stat == "DELIVRD" else "001")


PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "field": {
        "user_message_reference": False,
        "service_type": "CMT_FLD8",
        "sequence_start": 0xFFFFFFF0,
        "sequence_max": SEQ_WIRE_MAX,
        "payload_tlv": True,
        "payload_nul": True,
        "data_sm_every": 3,
        "receipt_data_coding": int(DataCoding.UCS2),
        "receipt_tlvs": False,
        "message_id_cycle": 16,
        "international_source": True,
    },
}

_FIELDS = {f.name: f for f in dataclasses.fields(Behaviour)}


def _check(name: str, value: Any) -> Any:
    if name not in _FIELDS:
        raise ProfileError(f"unknown flag {name!r}; flags: {', '.join(_FIELDS)}")
    default = _FIELDS[name].default
    if name == "receipt_outcomes":
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ProfileError('"receipt_outcomes" must be {"MSISDN": "STATE" or "STATE:ERR"}')
        for v in value.values():
            stat = v.partition(":")[0]
            if stat not in MESSAGE_STATES:
                raise ProfileError(f"receipt state {stat!r} unknown; use one of {', '.join(MESSAGE_STATES)}")
        return dict(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ProfileError(f'"{name}" must be true or false')
        return value
    if isinstance(default, int):
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise ProfileError(f'"{name}" must be an integer (or a hex string)') from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProfileError(f'"{name}" must be an integer')
        if name in ("sequence_start", "sequence_max") and not 1 <= value <= SEQ_WIRE_MAX:
            raise ProfileError(f'"{name}" must be 1..0xFFFFFFFF')
        if name == "receipt_data_coding" and not 0 <= value <= 0xFF:
            raise ProfileError('"receipt_data_coding" must be 0..255')
        if name in ("data_sm_every", "message_id_cycle") and value < 0:
            raise ProfileError(f'"{name}" must be >= 0')
        return value
    if not isinstance(value, str):
        raise ProfileError(f'"{name}" must be a string')
    if len(value.encode("latin-1", "replace")) > 64:
        raise ProfileError(f'"{name}" longer than 64 octets')
    return value


def make_behaviour(profile: str = "default", **flags: Any) -> Behaviour:
    """The flags of `profile`, then `flags` on top (each checked)."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    values = {k: _check(k, v) for k, v in {**PROFILES[profile], **flags}.items()}
    b = Behaviour(**values)
    if b.sequence_start > b.sequence_max:
        raise ProfileError("sequence_start must be <= sequence_max")
    return b


# ------------------------------------------------------------------------------------------------
# MOs as the profile shapes them


def shape_mo(parts: list[DeliverSm], b: Behaviour, carrier: str) -> list[DeliverSm]:
    """The handset's deliver_sm parts as this SMSC sends them (in place; returns `parts`)."""
    for p in parts:
        p.service_type = b.service_type
        if not b.user_message_reference:
            p.tlvs.pop(Tag.USER_MESSAGE_REFERENCE, None)
    if len(parts) == 1 and (b.payload_tlv or carrier == "data_sm"):
        p = parts[0]
        data = bytes(p.short_message)
        if b.payload_nul:
            data += b"\x00\x00" if p.data_coding == DataCoding.UCS2 else b"\x00"
        p.short_message = b""
        p.tlvs[Tag.MESSAGE_PAYLOAD] = data
    return parts


# ------------------------------------------------------------------------------------------------
# encoders (no truncation: what the SMSC has is what goes on the wire)

_HDR = struct.Struct(">IIII")


def _c(value: str) -> bytes:
    return value.encode("latin-1", "replace") + b"\x00"


def _tlvs(tlvs: dict[int, bytes]) -> bytes:
    return b"".join(struct.pack(">HH", int(t), len(v)) + bytes(v) for t, v in tlvs.items())


def encode_deliver_sm(d: DeliverSm, sequence: int) -> bytes:
    """A whole deliver_sm; service_type and addresses written whole, whatever their length."""
    msg = bytes(d.short_message or b"")
    if len(msg) > 254:
        raise ValueError(f"short_message is {len(msg)} octets (max 254)")
    body = b"".join((
        _c(d.service_type),
        bytes((d.source_addr_ton, d.source_addr_npi)), _c(d.source_addr),
        bytes((d.dest_addr_ton, d.dest_addr_npi)), _c(d.destination_addr),
        bytes((d.esm_class, d.protocol_id, d.priority_flag)),
        b"\x00\x00",  # schedule_delivery_time, validity_period
        bytes((d.registered_delivery, 0, d.data_coding, 0, len(msg))), msg,
        _tlvs(d.tlvs),
    ))
    return _HDR.pack(16 + len(body), CommandId.DELIVER_SM, 0, sequence) + body


def encode_data_sm(d: DeliverSm, sequence: int) -> bytes:
    """A whole data_sm carrying `d` (SMPP 3.4 4.7.1): no short_message; the text rides in the
    message_payload TLV (taken from `d.tlvs`, else `d.short_message`)."""
    tlvs = dict(d.tlvs)
    if Tag.MESSAGE_PAYLOAD not in tlvs:
        tlvs = {Tag.MESSAGE_PAYLOAD: bytes(d.short_message or b""), **tlvs}
    body = b"".join((
        _c(d.service_type),
        bytes((d.source_addr_ton, d.source_addr_npi)), _c(d.source_addr),
        bytes((d.dest_addr_ton, d.dest_addr_npi)), _c(d.destination_addr),
        bytes((d.esm_class, d.registered_delivery, d.data_coding)),
        _tlvs(tlvs),
    ))
    return _HDR.pack(16 + len(body), CommandId.DATA_SM, 0, sequence) + body


def encode_mo(d: DeliverSm, sequence: int, carrier: str = "deliver_sm") -> bytes:
    return encode_data_sm(d, sequence) if carrier == "data_sm" else encode_deliver_sm(d, sequence)


def partial_pdu(sequence: int, announced: int = 60000, octets: int = 40) -> bytes:
    """A deliver_sm header announcing `announced` octets and only `octets` octets of body after it."""
    if not 16 < announced <= SEQ_WIRE_MAX:
        raise ValueError("announced length must be above 16")
    if not 0 <= octets < announced - 16:
        raise ValueError("octets must be fewer than the announced body")
    body = (b"\x00\x01\x0113800138000\x00\x00\x0010086\x00" + b"\x00" * octets)[:octets]
    return _HDR.pack(announced, CommandId.DELIVER_SM, 0, sequence) + body
