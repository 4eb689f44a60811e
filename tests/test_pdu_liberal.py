"""Liberal decoding (issue 10): over-long C-octet strings, high sequence numbers, tolerant TLVs."""

from __future__ import annotations

import struct

import pytest
import smpplib.smpp

from smsbot import pdu
from smsbot.messages import CommandId, DeliverSm, SubmitSm

MAX_SEQ = 0xFFFFFFFF


class _Client:
    sequence = 0

    def next_sequence(self) -> int:
        return 1


def _sm_body(service_type: bytes, src: bytes, dst: bytes, schedule: bytes = b"", validity: bytes = b"",
             msg: bytes = b"0000", tlvs: bytes = b"", dc: int = 0) -> bytes:
    """A deliver_sm / submit_sm body laid out by hand (SMPP 3.4 4.4.1 / 4.6.1), no length limits."""
    return (
        service_type + b"\x00" + b"\x01\x01" + src + b"\x00" + b"\x00\x00" + dst + b"\x00"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + schedule + b"\x00" + validity + b"\x00"
        + bytes((0, 0, dc, 0, len(msg))) + msg + tlvs
    )


# ---------------------------------------------------------------------------------------------
# C-octet strings of any length


def test_overlong_service_type_decodes_like_smpplib():
    body = _sm_body(b"CMTLONG8", b"8613912345678", b"10086")
    assert len(b"CMTLONG8") == 8
    d = pdu.decode_deliver_sm(3, body)
    assert (d.service_type, d.source_addr, d.destination_addr, d.short_message) == (
        "CMTLONG8", "8613912345678", "10086", b"0000")
    theirs = smpplib.smpp.parse_pdu(struct.pack(">IIII", 16 + len(body), 5, 0, 3) + body, client=_Client())
    assert theirs.service_type == b"CMTLONG8"
    assert theirs.short_message == d.short_message


def test_overlong_addresses_and_times_decode():
    src = b"+" + b"8" * 40
    dst = b"1" * 30
    body = _sm_body(b"", src, dst, schedule=b"2401011200000000+XXXX", validity=b"R" * 25, msg=b"hi")
    d = pdu.decode_deliver_sm(1, body)
    assert (d.source_addr, d.destination_addr, d.short_message) == (src.decode(), dst.decode(), b"hi")
    sm, tlvs = pdu.decode_submit_sm(1, body)
    assert (sm.source_addr, sm.destination_addr, sm.short_message, tlvs) == (src.decode(), dst.decode(), b"hi", {})
    # every string field over-long at once, with a TLV after
    body = _sm_body(b"S" * 10, src, dst, b"1" * 20, b"2" * 20, b"x", struct.pack(">HH", 0x1401, 1) + b"v")
    d = pdu.decode_deliver_sm(1, body)
    assert (d.service_type, d.short_message, d.tlvs) == ("S" * 10, b"x", {0x1401: b"v"})


@pytest.mark.parametrize("cut_field", ["service_type", "source_addr", "destination_addr",
                                       "schedule_delivery_time", "validity_period"])
def test_missing_nul_before_the_end_is_the_only_string_error(cut_field):
    parts = {"service_type": b"CMTLONG8", "source_addr": b"8" * 30, "destination_addr": b"1" * 30,
             "schedule_delivery_time": b"3" * 20, "validity_period": b"4" * 20}
    full = _sm_body(parts["service_type"], parts["source_addr"], parts["destination_addr"],
                    parts["schedule_delivery_time"], parts["validity_period"])
    pdu.decode_deliver_sm(1, full)
    # cut the body in the middle of that field: no NUL follows
    start = full.index(parts[cut_field])
    body = full[: start + 5]
    for decode in (lambda b: pdu.decode_deliver_sm(1, b), lambda b: pdu.decode_submit_sm(1, b)):
        with pytest.raises(pdu.PduError, match=cut_field):
            decode(body)


def test_fast_path_unchanged_for_the_common_pdu():
    d = DeliverSm(9, source_addr="8613912345678", destination_addr="10086", short_message=b"0000")
    raw = pdu.encode_deliver_sm(d)
    assert pdu.decode_deliver_sm(9, raw[16:]) == d


def test_decode_bind_overlong_fields():
    body = b"S" * 20 + b"\x00" + b"P" * 12 + b"\x00" + b"T" * 15 + b"\x00" + b"\x34\x01\x01" + b"9" * 50 + b"\x00"
    b = pdu.decode_bind(body)
    assert b == {"system_id": "S" * 20, "password": "P" * 12, "system_type": "T" * 15,
                 "interface_version": 0x34, "addr_ton": 1, "addr_npi": 1, "address_range": "9" * 50}
    with pytest.raises(pdu.PduError, match="address_range"):
        pdu.decode_bind(body[:-1])


def test_encode_untruncated_for_a_simulator():
    d = DeliverSm(1, service_type="CMTLONG8", source_addr="8" * 30, destination_addr="10086", short_message=b"x")
    assert pdu.decode_deliver_sm(1, pdu.encode_deliver_sm(d)[16:]).service_type == "CMTLO"  # strict by default
    back = pdu.decode_deliver_sm(1, pdu.encode_deliver_sm(d, truncate=False)[16:])
    assert (back.service_type, back.source_addr) == ("CMTLONG8", "8" * 30)
    back = pdu.decode_data_sm(1, pdu.encode_data_sm(d, truncate=False)[16:])
    assert (back.service_type, back.source_addr, back.payload) == ("CMTLONG8", "8" * 30, b"x")


# ---------------------------------------------------------------------------------------------
# sequence numbers up to 0xFFFFFFFF


def _seq_of(raw: bytes) -> int:
    length, _cid, _status, seq = struct.unpack_from(">IIII", raw)
    assert length == len(raw)
    return seq


@pytest.mark.parametrize("seq", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, MAX_SEQ])
def test_every_encoder_takes_unsigned_32_bit_sequences(seq):
    sm = SubmitSm("10086", "8613912345678", b"hi")
    d = DeliverSm(seq, source_addr="861", destination_addr="10086", short_message=b"0000")
    encoded = [
        pdu.encode_header(CommandId.ENQUIRE_LINK, 0, seq),
        pdu.encode_header(CommandId.GENERIC_NACK, 3, seq),
        pdu.encode_submit_sm(sm, seq),
        pdu.submit_sm_with_sequence(pdu.encode_submit_sm_body(sm), seq),
        pdu.encode_submit_sm_resp(seq, 0, "abc"),
        pdu.encode_deliver_sm(d),
        pdu.encode_deliver_sm_resp(seq),
        pdu.encode_data_sm(d),
        pdu.encode_data_sm_resp(seq),
        pdu.encode_bind(CommandId.BIND_TRANSCEIVER, seq, "sys", "pw"),
        pdu.encode_bind_resp(CommandId.BIND_TRANSCEIVER_RESP, 0, seq, "smsc"),
    ]
    framer = pdu.Framer()
    framed = framer.feed(b"".join(encoded))
    assert len(framed) == len(encoded)
    for raw, (_cid, _status, fseq, _body) in zip(encoded, framed):
        assert _seq_of(raw) == seq == fseq
    assert pdu.decode_deliver_sm(framed[5][2], framed[5][3]).sequence == seq
    assert pdu.decode_data_sm(framed[7][2], framed[7][3]).sequence == seq


def test_sequence_beyond_32_bits_is_refused():
    with pytest.raises(struct.error):
        pdu.encode_deliver_sm_resp(MAX_SEQ + 1)


# ---------------------------------------------------------------------------------------------
# TLVs: a damaged tail does not make the PDU undecodable


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


@pytest.mark.parametrize("pad", [b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\xff\x01\x02"])
def test_trailing_padding_after_tlvs_is_ignored(pad):
    tlvs = _tlv(0x0204, b"\x00\x07") + _tlv(0x1401, b"vendor")
    d = pdu.decode_deliver_sm(1, _sm_body(b"", b"861", b"10086", tlvs=tlvs + pad))
    assert d.tlvs == {0x0204: b"\x00\x07", 0x1401: b"vendor"}
    assert pdu.tlv_problem(d.tlvs) is None
    assert type(d.tlvs) is dict
    # padding right after short_message (no TLV at all)
    d = pdu.decode_deliver_sm(1, _sm_body(b"", b"861", b"10086", tlvs=pad))
    assert (d.short_message, d.tlvs) == (b"0000", {})
    sm, tlvs = pdu.decode_submit_sm(1, _sm_body(b"", b"861", b"10086", tlvs=pad))
    assert tlvs == {}
    assert pdu.decode_tlvs(pad) == {}


def test_tlv_running_past_the_body_is_dropped_and_noted():
    good = _tlv(0x0204, b"\x00\x07") + _tlv(0x0424, b"0000")
    bad = struct.pack(">HH", 0x1401, 50) + b"short"
    d = pdu.decode_deliver_sm(1, _sm_body(b"", b"861", b"10086", msg=b"", tlvs=good + bad))
    assert d.tlvs == {0x0204: b"\x00\x07", 0x0424: b"0000"}
    assert d.payload == b"0000"
    assert isinstance(d.tlvs, pdu.PartialTlvs)
    assert "0x1401" in pdu.tlv_problem(d.tlvs) and "dropped" in pdu.tlv_problem(d.tlvs)
    # the same in data_sm and submit_sm
    raw = pdu.encode_data_sm(DeliverSm(1, source_addr="861", destination_addr="10086", short_message=b"0000"))
    dd = pdu.decode_data_sm(1, raw[16:] + bad)
    assert dd.payload == b"0000" and pdu.tlv_problem(dd.tlvs)
    _sm, tlvs = pdu.decode_submit_sm(1, _sm_body(b"", b"861", b"10086", tlvs=good + bad))
    assert tlvs == {0x0204: b"\x00\x07", 0x0424: b"0000"} and pdu.tlv_problem(tlvs)
    # the first TLV already bad: nothing kept, still decodable
    d = pdu.decode_deliver_sm(1, _sm_body(b"", b"861", b"10086", tlvs=bad))
    assert d.tlvs == {} and d.short_message == b"0000" and pdu.tlv_problem(d.tlvs)


def test_unknown_and_repeated_tags_kept_raw():
    tlvs = _tlv(0x3FFF, b"") + _tlv(0x7777, b"\x01") + _tlv(0x1401, b"a") + _tlv(0x1401, b"b")
    assert pdu.decode_tlvs(tlvs) == {0x3FFF: b"", 0x7777: b"\x01", 0x1401: b"b"}
    assert pdu.decode_tlvs(b"xx" + tlvs, 2) == {0x3FFF: b"", 0x7777: b"\x01", 0x1401: b"b"}
