"""smsbot.pdu against smpplib 2.2.4 as the oracle: byte identity, round trips, framing, errors."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
import smpplib.exceptions
import smpplib.smpp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smsbot import pdu
from smsbot.messages import CommandId, DeliverSm, SubmitSm, Tag

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def oracle(name: str, seq: int, **kwargs) -> bytes:
    """smpplib's bytes. make_pdu ignores `sequence=` (the property falls back to the dummy client's
    counter), but it must be non-None to avoid the dummy client's missing next_sequence()."""
    p = smpplib.smpp.make_pdu(name, sequence=seq, **kwargs)
    p.sequence = seq
    return p.generate()


class _Client:
    """Enough of an smpplib client for parse_pdu (the dummy one has no next_sequence())."""

    sequence = 0

    def next_sequence(self) -> int:
        return 1


def parse_oracle(data: bytes, **kwargs):
    return smpplib.smpp.parse_pdu(data, client=_Client(), **kwargs)


# ---------------------------------------------------------------------------------------------
# strategies

octet = st.integers(0, 255)
seqs = st.integers(1, 0x7FFFFFFF)
# C-octet strings: latin-1, no NUL; long enough to exercise smpplib's truncation to max-1
def cstr(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_size)


addresses = st.one_of(st.text("0123456789+", max_size=24), cstr(24))
payloads = st.one_of(
    st.binary(max_size=254),
    st.sampled_from([b"", b"x" * 140, bytes(range(254)), b"\x00" * 254, b"\x05\x00\x03\x01\x02\x01hi"]),
)


# ---------------------------------------------------------------------------------------------
# submit_sm


@SETTINGS
@given(
    seq=seqs,
    service_type=cstr(8),
    src=addresses,
    dst=addresses,
    ston=octet, snpi=octet, dton=octet, dnpi=octet,
    esm=octet, reg=octet,
    dc=st.sampled_from([0, 1, 3, 4, 8, 0xF0, 255]),
    msg=payloads,
)
@example(seq=1, service_type="", src="", dst="", ston=0, snpi=0, dton=0, dnpi=0, esm=0, reg=0, dc=0, msg=b"")
def test_submit_sm_identical_to_smpplib(seq, service_type, src, dst, ston, snpi, dton, dnpi, esm, reg, dc, msg):
    sm = SubmitSm(
        source_addr=src, destination_addr=dst, short_message=msg, data_coding=dc, esm_class=esm,
        source_addr_ton=ston, source_addr_npi=snpi, dest_addr_ton=dton, dest_addr_npi=dnpi,
        registered_delivery=reg, service_type=service_type,
    )
    ours = pdu.encode_submit_sm(sm, seq)
    theirs = oracle(
        "submit_sm", seq, service_type=service_type, source_addr_ton=ston, source_addr_npi=snpi,
        source_addr=src, dest_addr_ton=dton, dest_addr_npi=dnpi, destination_addr=dst,
        esm_class=esm, registered_delivery=reg, data_coding=dc, short_message=msg,
    )
    assert ours == theirs
    # and back
    back, tlvs = pdu.decode_submit_sm(seq, ours[16:])
    assert tlvs == {}
    assert back.short_message == msg
    assert (back.data_coding, back.esm_class, back.registered_delivery) == (dc, esm, reg)
    assert back.source_addr == src[:20] and back.destination_addr == dst[:20]
    assert back.service_type == service_type[:5]
    # the outbox's path: the parts of one MT share every field but short_message
    other = bytes(reversed(msg))
    template = pdu.SubmitSmTemplate(replace(sm, destination_addr="elsewhere"))
    bodies = template.bodies(dst, [msg, other])
    assert sm.short_message == msg, "the caller's message is left alone"
    assert pdu.submit_sm_with_sequence(bodies[0], seq) == theirs
    assert bodies[1] == pdu.encode_submit_sm_body(replace(sm, short_message=other))
    assert template.bodies(src, [msg]) == [pdu.encode_submit_sm_body(replace(sm, destination_addr=src))]


@SETTINGS
@given(
    seq=seqs,
    msg=st.binary(min_size=1, max_size=200),
    umr=st.none() | st.integers(0, 0xFFFF),
    sar=st.none() | st.tuples(st.integers(0, 0xFFFF), octet, octet),
)
def test_submit_sm_tlvs_identical_to_smpplib(seq, msg, umr, sar):
    tlvs: list[tuple[int, bytes]] = []
    kwargs = {}
    if umr is not None:
        tlvs.append((Tag.USER_MESSAGE_REFERENCE, struct.pack(">H", umr)))
        kwargs["user_message_reference"] = umr
    if sar is not None:
        tlvs += pdu.sar_tlvs(*sar)
        kwargs.update(sar_msg_ref_num=sar[0], sar_total_segments=sar[1], sar_segment_seqnum=sar[2])
    sm = SubmitSm("10086", "8613912345678", msg, data_coding=8)
    ours = pdu.encode_submit_sm(sm, seq, tlvs)
    theirs = oracle(
        "submit_sm", seq, source_addr="10086", destination_addr="8613912345678", short_message=msg,
        data_coding=8, dest_addr_ton=1, dest_addr_npi=1, **kwargs,
    )
    assert ours == theirs
    back, back_tlvs = pdu.decode_submit_sm(seq, ours[16:])
    assert back_tlvs == dict(tlvs)


@SETTINGS
@given(seq=seqs, payload=st.binary(min_size=1, max_size=1000))
def test_submit_sm_message_payload_identical_to_smpplib(seq, payload):
    sm = SubmitSm("10086", "8613912345678", b"", data_coding=8)
    ours = pdu.encode_submit_sm(sm, seq, [(Tag.MESSAGE_PAYLOAD, payload)])
    theirs = oracle(
        "submit_sm", seq, source_addr="10086", destination_addr="8613912345678", data_coding=8,
        dest_addr_ton=1, dest_addr_npi=1, message_payload=payload,
    )
    assert ours == theirs
    assert pdu.decode_submit_sm(seq, ours[16:])[1] == {Tag.MESSAGE_PAYLOAD: payload}


def test_submit_sm_rejects_overlong_short_message():
    with pytest.raises(ValueError):
        pdu.encode_submit_sm(SubmitSm("1", "2", b"x" * 255), 1)


def test_submit_sm_known_bytes():
    sm = SubmitSm("10086", "8613800000000", b"hi", data_coding=8, dest_addr_ton=0, dest_addr_npi=0)
    assert pdu.encode_submit_sm(sm, 5).hex() == (
        "00000035" "00000004" "00000000" "00000005"
        "00" "0000" "313030383600" "0000" "3836313338303030303030303000"
        "000000" "00" "00" "00" "00" "08" "00" "02" "6869"
    )


# ---------------------------------------------------------------------------------------------
# resps and session PDUs


@SETTINGS
@given(seq=seqs, status=st.sampled_from([0, 8, 0x14, 0x58, 0x64, 0x65, 0xFFFFFFFF]))
def test_deliver_sm_resp_identical_to_smpplib(seq, status):
    ours = pdu.encode_deliver_sm_resp(seq, status)
    assert ours == oracle("deliver_sm_resp", seq, status=status)
    assert len(ours) == 17 and ours[16:] == b"\x00"


def test_deliver_sm_resp_default_status():
    assert pdu.encode_deliver_sm_resp(9) == oracle("deliver_sm_resp", 9)


@SETTINGS
@given(seq=seqs, status=st.sampled_from([0, 0x58, 0x0B]), mid=st.text("0123456789abcdefABCDEF-_", max_size=70))
def test_submit_sm_resp_identical_to_smpplib(seq, status, mid):
    ours = pdu.encode_submit_sm_resp(seq, status, mid)
    assert ours == oracle("submit_sm_resp", seq, status=status, message_id=mid)
    assert pdu.decode_submit_sm_resp(ours[16:]) == mid[:64]


def test_decode_submit_sm_resp_lenient():
    assert pdu.decode_submit_sm_resp(b"") == ""
    assert pdu.decode_submit_sm_resp(b"\x00") == ""
    assert pdu.decode_submit_sm_resp(b"abc") == "abc"
    assert pdu.decode_submit_sm_resp(b"abc\x00junk") == "abc"


@pytest.mark.parametrize(
    "name,cid",
    [
        ("enquire_link", CommandId.ENQUIRE_LINK),
        ("enquire_link_resp", CommandId.ENQUIRE_LINK_RESP),
        ("unbind", CommandId.UNBIND),
        ("unbind_resp", CommandId.UNBIND_RESP),
        ("generic_nack", CommandId.GENERIC_NACK),
    ],
)
def test_session_pdus_identical_to_smpplib(name, cid):
    for seq in (1, 77, 0x7FFFFFFF):
        assert pdu.encode_header(cid, 0, seq) == oracle(name, seq)
    assert pdu.encode_header(cid, 3, 5) == oracle(name, 5, status=3)


# ---------------------------------------------------------------------------------------------
# bind


BINDS = [
    ("bind_transmitter", CommandId.BIND_TRANSMITTER),
    ("bind_receiver", CommandId.BIND_RECEIVER),
    ("bind_transceiver", CommandId.BIND_TRANSCEIVER),
]


@SETTINGS
@given(
    which=st.sampled_from(BINDS),
    seq=seqs,
    system_id=cstr(18),
    password=cstr(11),
    system_type=cstr(14),
    ton=octet,
    npi=octet,
    address_range=cstr(42),
)
def test_bind_identical_to_smpplib(which, seq, system_id, password, system_type, ton, npi, address_range):
    name, cid = which
    ours = pdu.encode_bind(cid, seq, system_id, password, system_type, 0x34, ton, npi, address_range)
    theirs = oracle(
        name, seq, system_id=system_id, password=password, system_type=system_type,
        addr_ton=ton, addr_npi=npi, address_range=address_range,
    )
    assert ours == theirs
    b = pdu.decode_bind(theirs[16:])
    assert b == {
        "system_id": system_id[:15],
        "password": password[:8],
        "system_type": system_type[:12],
        "interface_version": 0x34,
        "addr_ton": ton,
        "addr_npi": npi,
        "address_range": address_range[:40],
    }


@pytest.mark.parametrize("name,cid", BINDS)
def test_bind_resp_identical_to_smpplib(name, cid):
    rid = cid | 0x80000000
    assert pdu.encode_bind_resp(rid, 0, 3, "simsmsc") == oracle(name + "_resp", 3, system_id="simsmsc")
    assert pdu.encode_bind_resp(rid, 0x0E, 3, "simsmsc") == oracle(name + "_resp", 3, status=0x0E, system_id="simsmsc")
    assert pdu.encode_bind_resp(rid, 0, 4, "s", sc_interface_version=0x34) == oracle(
        name + "_resp", 4, system_id="s", sc_interface_version=0x34
    )


def test_decode_bind_errors():
    good = pdu.encode_bind(CommandId.BIND_TRANSCEIVER, 1, "sys", "pw")[16:]
    assert pdu.decode_bind(good)["system_id"] == "sys"
    for cut in range(len(good)):
        with pytest.raises(pdu.PduError):
            pdu.decode_bind(good[:cut])
    # liberal: a system_id longer than the spec's 16 octets is accepted up to its NUL
    b = pdu.decode_bind(b"x" * 30 + b"\x00pw\x00\x00\x34\x00\x00\x00")
    assert (b["system_id"], b["password"], b["interface_version"]) == ("x" * 30, "pw", 0x34)
    with pytest.raises(pdu.PduError, match="system_id"):
        pdu.decode_bind(b"x" * 30)  # no NUL before the end


# ---------------------------------------------------------------------------------------------
# deliver_sm

# smpplib's deliver_sm TLVs in its params_order, with a value strategy and the raw bytes
_DELIVER_TLVS = [
    ("user_message_reference", Tag.USER_MESSAGE_REFERENCE, st.integers(0, 0xFFFF), lambda v: struct.pack(">H", v)),
    ("source_port", Tag.SOURCE_PORT, st.integers(0, 0xFFFF), lambda v: struct.pack(">H", v)),
    ("sar_msg_ref_num", Tag.SAR_MSG_REF_NUM, st.integers(0, 0xFFFF), lambda v: struct.pack(">H", v)),
    ("sar_total_segments", Tag.SAR_TOTAL_SEGMENTS, octet, lambda v: bytes([v])),
    ("sar_segment_seqnum", Tag.SAR_SEGMENT_SEQNUM, octet, lambda v: bytes([v])),
    ("message_payload", Tag.MESSAGE_PAYLOAD, st.binary(min_size=1, max_size=600), bytes),
    ("network_error_code", Tag.NETWORK_ERROR_CODE, st.binary(min_size=3, max_size=3), bytes),
    ("message_state", Tag.MESSAGE_STATE, st.integers(1, 8), lambda v: bytes([v])),
    ("receipted_message_id", Tag.RECEIPTED_MESSAGE_ID, st.text("0123456789abcdef", min_size=1, max_size=64),
     lambda v: v.encode() + b"\x00"),
]


@st.composite
def deliver_cases(draw):
    fields = dict(
        service_type=draw(cstr(5)),
        source_addr_ton=draw(octet), source_addr_npi=draw(octet), source_addr=draw(cstr(20)),
        dest_addr_ton=draw(octet), dest_addr_npi=draw(octet), destination_addr=draw(cstr(20)),
        esm_class=draw(octet), protocol_id=draw(octet), priority_flag=draw(octet),
        registered_delivery=draw(octet), data_coding=draw(octet),
    )
    chosen = [t for t in _DELIVER_TLVS if draw(st.booleans())]
    kwargs = dict(fields)
    tlvs = {}
    for name, tag, strat, raw in chosen:
        v = draw(strat)
        kwargs[name] = v
        tlvs[int(tag)] = raw(v)
    msg = b"" if Tag.MESSAGE_PAYLOAD in tlvs else draw(payloads)
    kwargs["short_message"] = msg
    return fields, msg, tlvs, kwargs


@SETTINGS
@given(seq=seqs, case=deliver_cases())
def test_deliver_sm_identical_to_smpplib_and_round_trips(seq, case):
    fields, msg, tlvs, kwargs = case
    theirs = oracle("deliver_sm", seq, **kwargs)
    d = DeliverSm(seq, short_message=msg, tlvs=tlvs, **fields)
    assert pdu.encode_deliver_sm(d) == theirs
    back = pdu.decode_deliver_sm(seq, theirs[16:])
    assert back == d
    # smpplib parses the same bytes to the same values
    parsed = parse_oracle(theirs)
    assert parsed.source_addr.decode("latin-1") == back.source_addr
    assert parsed.destination_addr.decode("latin-1") == back.destination_addr
    assert (parsed.short_message or b"") == back.short_message
    if Tag.MESSAGE_PAYLOAD in tlvs:
        assert parsed.message_payload == back.tlvs[Tag.MESSAGE_PAYLOAD]  # .payload strips NUL padding


def test_deliver_sm_keeps_vendor_tlvs_smpplib_chokes_on():
    d = DeliverSm(
        42, source_addr="8613912345678", destination_addr="10086", esm_class=4, data_coding=0,
        short_message=b"id:1 stat:DELIVRD",
        tlvs={Tag.RECEIPTED_MESSAGE_ID: b"1\x00", 0x1401: b"vendor", 0x3FFF: b"", 0x7777: b"\x01\x02"},
    )
    raw = pdu.encode_deliver_sm(d)
    with pytest.raises(smpplib.exceptions.UnknownCommandError):
        parse_oracle(raw)
    lenient = parse_oracle(raw, allow_unknown_opt_params=True)  # smpplib can only drop them
    assert lenient.receipted_message_id == b"1"
    back = pdu.decode_deliver_sm(42, raw[16:])
    assert back.tlvs == d.tlvs
    assert list(back.tlvs) == list(d.tlvs)
    assert back == d


def _sample_deliver_body() -> tuple[bytes, int, list[int]]:
    d = DeliverSm(
        1, source_addr="8613912345678", destination_addr="10086", data_coding=8,
        short_message="你好".encode("utf-16-be"),
        tlvs={Tag.USER_MESSAGE_REFERENCE: b"\x00\x07", 0x1401: b"abc"},
    )
    body = pdu.encode_deliver_sm(d)[16:]
    sm_end = len(body) - (6 + 7)
    boundaries = [sm_end, sm_end + 6, len(body)]
    return body, sm_end, boundaries


def test_deliver_sm_truncations():
    body, sm_end, boundaries = _sample_deliver_body()
    umr = {Tag.USER_MESSAGE_REFERENCE: b"\x00\x07"}
    for cut in range(len(body) + 1):
        if cut < sm_end:  # in the mandatory part or short_message: undecodable
            with pytest.raises(pdu.PduError):
                pdu.decode_deliver_sm(1, body[:cut])
            continue
        tlvs = pdu.decode_deliver_sm(1, body[:cut]).tlvs
        first_done = cut >= sm_end + 6
        expected = umr if first_done else {}
        if cut == len(body):
            expected = {**umr, 0x1401: b"abc"}
        assert tlvs == expected, cut
        # a cut TLV header (1-3 octets) is padding, ignored; a cut TLV value is dropped and noted
        tail = cut - (sm_end + 6 if first_done else sm_end)
        if cut in boundaries or tail < 4:
            assert pdu.tlv_problem(tlvs) is None, cut
        else:
            assert "runs" in pdu.tlv_problem(tlvs), cut


def test_deliver_sm_overlong_fields_accepted_missing_nul_raises():
    ok = pdu.encode_deliver_sm(DeliverSm(1, source_addr="1" * 20, destination_addr="2"))[16:]
    pdu.decode_deliver_sm(1, ok)
    # 21 address octets and an 8-octet service_type (spec: 20 and 5): liberal, accepted
    long_src = b"\x00\x01\x01" + b"1" * 21 + b"\x00" + ok[1 + 2 + 21 :]
    assert pdu.decode_deliver_sm(1, long_src).source_addr == "1" * 21
    assert pdu.decode_deliver_sm(1, b"CMTXYZAB" + ok).service_type == "CMTXYZAB"
    # no NUL before the end of the body: an error naming the field
    with pytest.raises(pdu.PduError, match="source_addr"):
        pdu.decode_deliver_sm(1, b"\x00\x01\x01" + b"1" * 40)
    with pytest.raises(pdu.PduError, match="service_type"):
        pdu.decode_deliver_sm(1, b"CMTXYZ")
    # sm_length beyond the body
    d = pdu.encode_deliver_sm(DeliverSm(1, short_message=b"hello"))[16:]
    with pytest.raises(pdu.PduError, match="sm_length"):
        pdu.decode_deliver_sm(1, d[:-5] + b"hi")
    with pytest.raises(pdu.PduError):
        pdu.decode_submit_sm(1, b"")


def test_deliver_sm_with_service_type_and_times():
    ok = pdu.encode_deliver_sm(DeliverSm(3, service_type="CMT", source_addr="861", destination_addr="10086", short_message=b"x"))[16:]
    mandatory_end = len(ok) - 1 - 5  # before registered_delivery..sm_length
    times = b"240101120000000+\x00" + b"000001000000000R\x00"
    body = ok[: mandatory_end - 2] + times + ok[mandatory_end:]
    d = pdu.decode_deliver_sm(3, body)
    assert (d.service_type, d.source_addr, d.short_message) == ("CMT", "861", b"x")
    only_validity = ok[: mandatory_end - 2] + b"\x00000001000000000R\x00" + ok[mandatory_end:]
    assert pdu.decode_deliver_sm(3, only_validity).short_message == b"x"
    overlong = ok[: mandatory_end - 2] + b"2" * 17 + b"\x00" + b"3" * 20 + b"\x00" + ok[mandatory_end:]
    assert pdu.decode_deliver_sm(3, overlong).short_message == b"x"  # liberal: any length up to a NUL
    with pytest.raises(pdu.PduError, match="schedule"):
        pdu.decode_deliver_sm(3, ok[: mandatory_end - 2] + b"2" * 17)
    with pytest.raises(pdu.PduError, match="validity"):
        pdu.decode_deliver_sm(3, ok[: mandatory_end - 2] + b"\x001")


@SETTINGS
@given(st.binary(max_size=300))
def test_decoders_raise_only_pdu_error_on_garbage(data):
    for fn in (lambda b: pdu.decode_deliver_sm(1, b), lambda b: pdu.decode_submit_sm(1, b), pdu.decode_bind,
               lambda b: pdu.decode_data_sm(1, b)):
        try:
            fn(data)
        except pdu.PduError:
            pass
    assert isinstance(pdu.decode_submit_sm_resp(data), str)
    assert isinstance(pdu.decode_bind_resp(data), str)
    assert isinstance(pdu.decode_tlvs(data), dict)  # never raises


# ---------------------------------------------------------------------------------------------
# framing


def _stream() -> tuple[bytes, list[tuple[int, int, int, bytes]]]:
    pdus = [
        pdu.encode_header(CommandId.ENQUIRE_LINK, 0, 1),
        pdu.encode_deliver_sm(DeliverSm(2, source_addr="861", destination_addr="10086", short_message=b"0000")),
        pdu.encode_deliver_sm_resp(3, 0x64),
        pdu.encode_submit_sm(SubmitSm("10086", "861", "菜单".encode("utf-16-be")), 4),
        pdu.encode_header(CommandId.UNBIND, 0, 5),
    ]
    expected = [(struct.unpack(">I", p[4:8])[0], struct.unpack(">I", p[8:12])[0], struct.unpack(">I", p[12:16])[0], p[16:]) for p in pdus]
    return b"".join(pdus), expected


def test_framer_one_read():
    data, expected = _stream()
    f = pdu.Framer()
    assert f.feed(data) == expected
    assert f.buffered == 0
    assert f.feed(b"") == []


def test_framer_split_at_every_boundary():
    data, expected = _stream()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 7):
            f = pdu.Framer()
            got = f.feed(data[:i]) + f.feed(data[i:j]) + f.feed(data[j:])
            assert got == expected, (i, j)
            assert f.buffered == 0


def test_framer_byte_at_a_time():
    data, expected = _stream()
    f = pdu.Framer()
    got = []
    for k in range(len(data)):
        got += f.feed(data[k : k + 1])
    assert got == expected
    assert all(type(body) is bytes for *_, body in got)


def test_framer_many_pdus_in_one_read_and_partial_tail():
    one = pdu.encode_deliver_sm(DeliverSm(7, source_addr="8613912345678", destination_addr="10086", short_message=b"1"))
    data = one * 20000
    f = pdu.Framer()
    got = f.feed(data + one[:10])
    assert len(got) == 20000 and got[0] == got[-1] == (CommandId.DELIVER_SM, 0, 7, one[16:])
    assert f.buffered == 10
    assert f.feed(one[10:] + one) == [got[0], got[0]]
    assert f.buffered == 0
    # many PDUs while something is buffered (bytearray path)
    assert len(f.feed(one[:3])) == 0
    assert len(f.feed(one[3:] + one * 5000)) == 5001


def test_framer_accepts_memoryview_and_bytearray():
    data, expected = _stream()
    for got in (pdu.Framer().feed(memoryview(data)), pdu.Framer().feed(bytearray(data))):
        assert got == expected and all(type(body) is bytes for *_, body in got)  # a copy, not a view of the read
    f = pdu.Framer()
    assert f.feed(bytearray(data[:20])) + f.feed(memoryview(data[20:])) == expected


@pytest.mark.parametrize("length", [0, 1, 15, pdu.MAX_PDU_LEN + 1, 0xFFFFFFFF])
def test_framer_bad_length(length):
    good = pdu.encode_header(CommandId.ENQUIRE_LINK, 0, 1)
    bad = struct.pack(">IIII", length, 0x15, 0, 2)
    f = pdu.Framer()
    with pytest.raises(pdu.FramingError) as ei:
        f.feed(good + bad)
    assert ei.value.pdus == [(CommandId.ENQUIRE_LINK, 0, 1, b"")]
    assert isinstance(ei.value, pdu.PduError)
    with pytest.raises(pdu.FramingError):  # stays broken
        f.feed(good)
    # detected as soon as the 4 length octets are there
    f = pdu.Framer()
    assert f.feed(bad[:3]) == []
    with pytest.raises(pdu.FramingError):
        f.feed(bad[3:4])


def test_framer_max_length_ok():
    body = b"\x00" * (pdu.MAX_PDU_LEN - 16)
    raw = pdu.encode_header(0x12345, 0, 9, body)
    f = pdu.Framer()
    assert f.feed(raw[:1000]) == []
    assert f.feed(raw[1000:]) == [(0x12345, 0, 9, body)]
