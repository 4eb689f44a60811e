"""data_sm (SMPP 3.4 4.7.1) and bind_*_resp decoding: hand-built bytes, round trips, smpplib as oracle."""

from __future__ import annotations

import struct

import pytest
import smpplib.smpp

from smsbot import codec, pdu
from smsbot.messages import CommandId, DeliverSm, Tag


def _parse_oracle(data: bytes):
    class _Client:
        sequence = 0

        def next_sequence(self) -> int:
            return 1

    return smpplib.smpp.parse_pdu(data, client=_Client(), allow_unknown_opt_params=True)


def _hand_built_data_sm(seq: int, service_type: bytes, src: bytes, dst: bytes, tlvs: bytes,
                        esm: int = 0, reg: int = 0, dc: int = 0, src_ton_npi: bytes = b"\x01\x01") -> bytes:
    """A data_sm laid out field by field as in SMPP 3.4 4.7.1 (not via smsbot.pdu)."""
    body = (
        service_type + b"\x00"  # service_type, C-octet string
        + src_ton_npi + src + b"\x00"  # source_addr_ton, source_addr_npi, source_addr
        + b"\x00\x00" + dst + b"\x00"  # dest_addr_ton, dest_addr_npi, destination_addr
        + bytes((esm, reg, dc))  # esm_class, registered_delivery, data_coding
        + tlvs
    )
    return struct.pack(">IIII", 16 + len(body), 0x00000103, 0, seq) + body


def test_decode_hand_built_data_sm():
    tlvs = struct.pack(">HH", 0x0424, 4) + b"0000" + struct.pack(">HH", 0x1401, 2) + b"vv"
    raw = _hand_built_data_sm(77, b"", b"8613912345678", b"10086", tlvs)
    d = pdu.decode_data_sm(77, raw[16:])
    assert d == DeliverSm(
        77, "", 1, 1, "8613912345678", 0, 0, "10086", 0, 0, 0, 0, 0, b"",
        {0x0424: b"0000", 0x1401: b"vv"},
    )
    assert d.payload == b"0000"
    assert not d.is_receipt
    ib = codec.inbound_from_deliver_sm(d)
    assert (ib.msisdn, ib.short_code, ib.text, ib.sequence) == ("8613912345678", "10086", "0000", 77)


def test_decode_hand_built_data_sm_ucs2_service_type_and_receipt():
    text = "你好".encode("utf-16-be")
    tlvs = struct.pack(">HH", 0x0424, len(text)) + text
    raw = _hand_built_data_sm(0xFFFFFFFF, b"WAP", b"861", b"10086", tlvs, esm=0, reg=1, dc=8)
    d = pdu.decode_data_sm(0xFFFFFFFF, raw[16:])
    assert (d.service_type, d.registered_delivery, d.data_coding, d.payload) == ("WAP", 1, 8, text)
    assert codec.inbound_from_deliver_sm(d).text == "你好"
    # a receipt carried by data_sm, no TLV except message_payload
    rtext = b"id:abc sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000"
    raw = _hand_built_data_sm(5, b"", b"10086", b"861", struct.pack(">HH", 0x0424, len(rtext)) + rtext, esm=4)
    r = codec.parse_receipt(pdu.decode_data_sm(5, raw[16:]))
    assert (r.message_id, r.state, r.error) == ("abc", "DELIVRD", "000")


def test_decode_data_sm_matches_smpplib():
    raw = _hand_built_data_sm(9, b"CMT", b"8613912345678", b"10086", struct.pack(">HH", 0x0424, 2) + b"hi", dc=3)
    theirs = _parse_oracle(raw)
    ours = pdu.decode_data_sm(9, raw[16:])
    assert theirs.source_addr.decode() == ours.source_addr
    assert theirs.destination_addr.decode() == ours.destination_addr
    assert theirs.message_payload == ours.payload
    assert theirs.data_coding == ours.data_coding


def test_data_sm_round_trip():
    d = DeliverSm(
        123, "CMT", 1, 1, "8613912345678", 0, 0, "10086", 0x40, 0, 0, 1, 8,
        b"", {Tag.USER_MESSAGE_REFERENCE: b"\x00\x07", Tag.MESSAGE_PAYLOAD: b"\x05\x00\x03\x01\x02\x01\x4f\x60"},
    )
    raw = pdu.encode_data_sm(d)
    length, cid, status, seq = struct.unpack_from(">IIII", raw)
    assert (length, cid, status, seq) == (len(raw), CommandId.DATA_SM, 0, 123)
    assert pdu.decode_data_sm(seq, raw[16:]) == d
    assert list(pdu.decode_data_sm(seq, raw[16:]).tlvs) == [Tag.USER_MESSAGE_REFERENCE, Tag.MESSAGE_PAYLOAD]


def test_encode_data_sm_puts_short_message_in_message_payload():
    d = DeliverSm(0xFFFFFFFF, source_addr="861", destination_addr="10086", short_message=b"0000")
    raw = pdu.encode_data_sm(d)
    assert raw == _hand_built_data_sm(
        0xFFFFFFFF, b"", b"861", b"10086", struct.pack(">HH", 0x0424, 4) + b"0000", src_ton_npi=b"\x00\x00"
    )
    back = pdu.decode_data_sm(0xFFFFFFFF, raw[16:])
    assert back.short_message == b""
    assert back.tlvs == {Tag.MESSAGE_PAYLOAD: b"0000"}
    assert back.payload == b"0000"
    # an empty payload is still an (empty) message_payload TLV
    back = pdu.decode_data_sm(1, pdu.encode_data_sm(DeliverSm(1))[16:])
    assert back.tlvs == {Tag.MESSAGE_PAYLOAD: b""}
    # the payload may exceed the 254 octets of short_message
    big = pdu.encode_data_sm(DeliverSm(1, short_message=b"x" * 1000))
    assert pdu.decode_data_sm(1, big[16:]).payload == b"x" * 1000


def test_data_sm_resp():
    assert pdu.encode_data_sm_resp(7) == struct.pack(">IIIIB", 17, 0x80000103, 0, 7, 0)
    assert pdu.encode_data_sm_resp(0xFFFFFFFF, 0x64) == struct.pack(">IIIIB", 17, 0x80000103, 0x64, 0xFFFFFFFF, 0)
    p = smpplib.smpp.make_pdu("data_sm_resp", sequence=7, message_id="")
    p.sequence = 7
    assert pdu.encode_data_sm_resp(7) == p.generate()


def test_decode_data_sm_truncated_raises_pdu_error():
    raw = _hand_built_data_sm(1, b"", b"861", b"10086", b"")
    body = raw[16:]
    assert pdu.decode_data_sm(1, body).tlvs == {}
    for cut in range(len(body)):
        with pytest.raises(pdu.PduError):
            pdu.decode_data_sm(1, body[:cut])


def test_decode_bind_resp():
    raw = pdu.encode_bind_resp(0x80000009, 0, 1, "smsc", sc_interface_version=0x34)
    assert pdu.decode_bind_resp(raw[16:]) == "smsc"
    assert pdu.decode_bind_resp(b"smsc\x00") == "smsc"
    assert pdu.decode_bind_resp(b"") == ""
    assert pdu.decode_bind_resp(b"no-nul-at-all") == "no-nul-at-all"
    assert pdu.decode_bind_resp(b"x" * 40 + b"\x00\x14\x01\x00\x03abc") == "x" * 40  # overlong, vendor TLV
    for name, cid in (("bind_transceiver_resp", 0x80000009), ("bind_receiver_resp", 0x80000001)):
        p = smpplib.smpp.make_pdu(name, sequence=2, system_id="simsmsc")
        p.sequence = 2
        assert pdu.decode_bind_resp(p.generate()[16:]) == "simsmsc"
