"""smsbot.codec: GSM 03.38, data_coding, long-message splitting, UDH/SAR, receipts."""

from __future__ import annotations

import re
import struct
from datetime import datetime

import pytest
import smpplib.gsm
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smsbot import codec
from smsbot.messages import DeliverSm, Inbound, Receipt, Segment, Tag

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "\x0c^{}\\[~]|€"
GSM_ALL = GSM_BASIC + GSM_EXT

gsm_text = st.text(st.sampled_from(GSM_ALL), max_size=700)
ext_heavy = st.text(st.sampled_from(GSM_EXT + "ab"), max_size=500)
any_text = st.text(max_size=600)  # all of Unicode except lone surrogates
cjk_emoji = st.text(
    st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
        st.sampled_from("€[]{}^~|\\ a1\n"),
    ),
    max_size=400,
)
texts = st.one_of(gsm_text, ext_heavy, any_text, cjk_emoji)


# ---------------------------------------------------------------------------------------------
# GSM 03.38


def test_gsm_table_shape():
    assert len(GSM_BASIC) == 127 and len(set(GSM_BASIC)) == 127
    enc = codec.gsm7_encode(GSM_BASIC)
    assert sorted(enc) == [i for i in range(128) if i != 0x1B]
    assert codec.gsm7_encode("@") == b"\x00"
    assert codec.gsm7_encode("§") == b"\x5f"
    assert codec.gsm7_encode("€") == b"\x1b\x65"
    assert codec.gsm7_encode("{}[]~^|\\\x0c") == b"\x1b\x28\x1b\x29\x1b\x3c\x1b\x3e\x1b\x3d\x1b\x14\x1b\x40\x1b\x2f\x1b\x0a"


@SETTINGS
@given(gsm_text)
def test_gsm7_round_trip(text):
    data = codec.gsm7_encode(text)
    assert codec.is_gsm7(text)
    assert codec.gsm7_len(text) == len(data)
    assert codec.gsm7_decode(data) == text


@SETTINGS
@given(st.text(st.sampled_from(GSM_ALL.replace("§", "").replace("\x0c", "")), max_size=200))
def test_gsm7_encode_matches_smpplib(text):
    # smpplib's table has '`' at 0x5F instead of '§' and lacks the form feed; everything else agrees
    assert codec.gsm7_encode(text) == smpplib.gsm.gsm_encode(text)


@pytest.mark.parametrize("text", ["`", "中", "a😀", "\x1b", "ç", "\x00", "Ą"])
def test_gsm7_encode_rejects(text):
    assert not codec.is_gsm7(text)
    with pytest.raises(ValueError) as ei:
        codec.gsm7_encode("ok " + text)
    assert isinstance(ei.value, UnicodeEncodeError) and ei.value.start == 3 + len(text) - 1


@SETTINGS
@given(st.binary(max_size=400))
def test_gsm7_decode_never_raises(data):
    out = codec.gsm7_decode(data)
    assert isinstance(out, str)
    assert len(out) <= len(data)


def test_gsm7_decode_odd_input():
    assert codec.gsm7_decode(b"\x80\xffA") == "??A"
    assert codec.gsm7_decode(b"A\x1b") == "A"  # dangling escape dropped
    assert codec.gsm7_decode(b"\x1b\x41") == "A"  # unknown extension → main table (23.038)
    assert codec.gsm7_decode(b"\x1b\x1b\x65") == "€"
    assert codec.gsm7_decode(b"\x1b\x90") == "?"


# ---------------------------------------------------------------------------------------------
# decode_text


@SETTINGS
@given(st.integers(0, 255), st.binary(max_size=300))
@example(8, b"\xd8\x00")  # lone high surrogate
@example(8, b"\xdc\x00\x00\x41")  # lone low surrogate
@example(8, b"\x00\x41\x00")  # odd length
def test_decode_text_never_raises(dc, data):
    assert isinstance(codec.decode_text(dc, data), str)


def test_decode_text_codings():
    assert codec.decode_text(0, b"\x00Hello\x1b\x65") == "@Hello€"
    assert codec.decode_text(1, b"hello") == "hello"
    assert codec.decode_text(3, "café".encode("latin-1")) == "café"
    assert codec.decode_text(8, "你好😀".encode("utf-16-be")) == "你好😀"
    assert codec.decode_text(8, b"\x00A\x00") == "A\ufffd"
    assert codec.decode_text(8, b"\xd8\x3d\x00A") == "\ufffdA"
    assert codec.decode_text(4, b"\x01\xab") == "01ab"
    assert codec.decode_text(2, b"\xff") == "ff"
    assert codec.decode_text(0x18, "你".encode("utf-16-be")) == "你"  # GSM DCS group, UCS-2
    assert codec.decode_text(0xF0, b"Hi") == "Hi"
    assert codec.decode_text(0xF4, b"Hi") == "4869"
    assert codec.decode_text(0x42, "你好".encode("utf-8")) == "你好"  # unknown: UTF-8
    assert codec.decode_text(0x42, b"\xe9t\xe9") == "été"  # unknown: latin-1 fallback


# ---------------------------------------------------------------------------------------------
# encode_text


def _reassemble(coding, esm, parts):
    if esm & 0x40:
        payloads, segments = zip(*(codec.split_udh(p) for p in parts))
        assert all(s is not None for s in segments)
        assert [s.seq for s in segments] == list(range(1, len(parts) + 1))
        assert {s.total for s in segments} == {len(parts)}
        assert len({s.ref for s in segments}) == 1
    else:
        assert len(parts) == 1
        payloads = parts
    return payloads


@SETTINGS
@given(texts)
@example("")
@example("€" * 77)  # 154 septets: the 77th escape would straddle 153
@example("😀" * 36)  # 72 units: the 34th pair would straddle 67
def test_encode_text_round_trip_and_limits(text):
    coding, esm, parts = codec.encode_text(text)
    payloads = _reassemble(coding, esm, parts)
    # each part decodes on its own (no pair is ever split) and the parts join to the original
    assert "".join(codec.decode_text(coding, p) for p in payloads) == text
    assert codec.decode_text(coding, b"".join(payloads)) == text
    if coding == 0:
        assert codec.is_gsm7(text)
        limit_single, limit_part = 160, 153
    else:
        assert coding == 8 and not codec.is_gsm7(text)
        limit_single, limit_part = 140, 134
    if esm == 0:
        assert len(parts[0]) <= limit_single
    else:
        assert esm == 0x40 and len(parts) >= 2
        assert all(len(p) <= 6 + limit_part for p in parts)
        assert all(p[:3] == b"\x05\x00\x03" for p in parts)
    for p in payloads:
        if coding == 0:
            assert not p.endswith(b"\x1b") or p.endswith(b"\x1b\x1b")  # no dangling escape
        else:
            assert len(p) % 2 == 0
            if p:
                assert not 0xD8 <= p[-2] <= 0xDB  # no high surrogate at the end
                assert not 0xDC <= p[0] <= 0xDF  # no low surrogate at the start


@pytest.mark.parametrize(
    "text,coding,nparts",
    [
        ("a" * 160, 0, 1),
        ("a" * 161, 0, 2),
        ("€" * 80, 0, 1),  # 160 septets
        ("€" * 80 + "a", 0, 2),
        ("a" * 153 * 2, 0, 2),
        ("a" * (153 * 2 + 1), 0, 3),
        ("中" * 70, 8, 1),
        ("中" * 71, 8, 2),
        ("😀" * 35, 8, 1),  # 70 UTF-16 units
        ("😀" * 35 + "a", 8, 2),
        ("中" * 134, 8, 2),
        ("中" * 135, 8, 3),
        ("a" * 159 + "中", 8, 3),
        ("", 0, 1),
    ],
)
def test_encode_text_boundaries(text, coding, nparts):
    c, esm, parts = codec.encode_text(text, ref=9)
    assert (c, len(parts)) == (coding, nparts)
    assert esm == (0 if nparts == 1 else 0x40)


def test_escape_pair_and_surrogate_pair_not_split():
    _, _, parts = codec.encode_text("a" + "€" * 80, ref=1)  # escape would start at septet 153
    assert len(parts[0]) == 6 + 153 and parts[0].endswith(b"\x1b\x65")
    _, _, parts = codec.encode_text("€" * 100, ref=1)
    assert len(parts[0]) == 6 + 152 and parts[1][6:8] == b"\x1b\x65"
    _, _, parts = codec.encode_text("😀" * 36, ref=1)
    assert len(parts[0]) == 6 + 132 and parts[1][6:10] == "😀".encode("utf-16-be")


def test_chinese_menu_is_ucs2_multipart():
    menu = "【中国移动】您好！请回复以下数字办理业务：\n" + "\n".join(
        f"{i}. {name}（资费说明请回复{i}0）" for i, name in enumerate(
            ["查询话费余额", "查询流量使用", "办理流量包", "取消流量包", "查询套餐", "更改套餐", "话费充值",
             "积分兑换", "账单查询", "国际漫游", "来电提醒", "彩铃业务", "语音信箱", "停机保号", "挂失补卡",
             "宽带业务", "家庭网", "亲情号码", "人工服务", "退订全部"], 1)
    )
    assert len(menu.splitlines()) == 21
    coding, esm, parts = codec.encode_text(menu, ref=0xAB)
    assert coding == 8 and esm == 0x40 and len(parts) >= 4
    assert all(p[:5] == bytes([5, 0, 3, 0xAB, len(parts)]) for p in parts)
    assert "".join(codec.decode_text(8, codec.split_udh(p)[0]) for p in parts) == menu


def test_encode_text_ref_and_limits():
    refs = {codec.encode_text("a" * 200)[2][0][3] for _ in range(50)}
    assert len(refs) > 1 and all(0 <= r <= 255 for r in refs)
    assert codec.encode_text("a" * 200, ref=0)[2][0][3] == 0
    with pytest.raises(ValueError):
        codec.encode_text("a" * 200, ref=256)
    assert len(codec.encode_text("a" * 153 * 255)[2]) == 255
    with pytest.raises(ValueError):
        codec.encode_text("a" * (153 * 255 + 1))


# ---------------------------------------------------------------------------------------------
# UDH / SAR


def test_split_udh_ieis():
    assert codec.split_udh(b"\x05\x00\x03\x2a\x03\x02hello") == (b"hello", Segment(0x2A, 3, 2))
    assert codec.split_udh(b"\x06\x08\x04\x12\x34\x02\x01hi") == (b"hi", Segment(0x1234, 2, 1))
    # port addressing element first, then concatenation
    udh = b"\x0b\x05\x04\x0b\x84\x23\xf0\x00\x03\x07\x02\x02"
    assert codec.split_udh(udh + b"x") == (b"x", Segment(7, 2, 2))
    # no concatenation element: stripped, no segment
    assert codec.split_udh(b"\x06\x05\x04\x0b\x84\x23\xf0body") == (b"body", None)
    # insane numbers: stripped, no segment
    assert codec.split_udh(b"\x05\x00\x03\x01\x01\x01x") == (b"x", None)
    assert codec.split_udh(b"\x05\x00\x03\x01\x03\x04x") == (b"x", None)
    assert codec.split_udh(b"\x05\x00\x03\x01\x03\x00x") == (b"x", None)
    # empty UDH
    assert codec.split_udh(b"\x00abc") == (b"abc", None)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x05",
        b"\x05\x00\x03\x01\x02",  # UDHL past the end
        b"\x05\x00\x05\x01\x02\x01xx",  # element runs past the header
        b"\x04\x00\x02\x01\x02x",  # IEI 0 with a wrong length
        b"\x05\x08\x03\x01\x02\x01x",  # IEI 8 with a wrong length
        b"\x01\x00x",  # element header cut
    ],
)
def test_split_udh_garbage_is_no_udh(garbage):
    assert codec.split_udh(garbage) == (garbage, None)


@SETTINGS
@given(st.binary(max_size=200))
def test_split_udh_never_raises(data):
    rest, seg = codec.split_udh(data)
    assert data.endswith(rest)
    if seg is not None:
        assert seg.total >= 2 and 1 <= seg.seq <= seg.total


def test_segment_from_tlvs():
    sar = {Tag.SAR_MSG_REF_NUM: b"\x01\x02", Tag.SAR_TOTAL_SEGMENTS: b"\x03", Tag.SAR_SEGMENT_SEQNUM: b"\x03"}
    assert codec.segment_from_tlvs(sar) == Segment(0x0102, 3, 3)
    assert codec.segment_from_tlvs({**sar, Tag.SAR_SEGMENT_SEQNUM: b"\x04"}) is None
    assert codec.segment_from_tlvs({**sar, Tag.SAR_TOTAL_SEGMENTS: b"\x01", Tag.SAR_SEGMENT_SEQNUM: b"\x01"}) is None
    assert codec.segment_from_tlvs({k: v for k, v in sar.items() if k != Tag.SAR_MSG_REF_NUM}) is None
    assert codec.segment_from_tlvs({**sar, Tag.SAR_TOTAL_SEGMENTS: b""}) is None
    assert codec.segment_from_tlvs({}) is None


def test_inbound_from_deliver_sm():
    plain = DeliverSm(5, source_addr="8613912345678", destination_addr="10086", data_coding=0, short_message=b"0000",
                      tlvs={Tag.USER_MESSAGE_REFERENCE: b"\x00\x2a"})
    assert codec.inbound_from_deliver_sm(plain) == Inbound("8613912345678", "10086", "0000", 5, None, 42, b"0000", 0)

    udh = DeliverSm(6, source_addr="861", destination_addr="10086", esm_class=0x40, data_coding=8,
                    short_message=b"\x05\x00\x03\x07\x02\x01" + "你好".encode("utf-16-be"))
    assert codec.inbound_from_deliver_sm(udh) == Inbound(
        "861", "10086", "你好", 6, Segment(7, 2, 1), None, "你好".encode("utf-16-be"), 8)

    # UDH bytes are not stripped without UDHI
    no_udhi = DeliverSm(6, data_coding=4, short_message=b"\x05\x00\x03\x07\x02\x01")
    assert codec.inbound_from_deliver_sm(no_udhi).segment is None

    sar = DeliverSm(7, source_addr="861", destination_addr="10086", data_coding=0, short_message=b"ignored",
                    tlvs={Tag.SAR_MSG_REF_NUM: struct.pack(">H", 300), Tag.SAR_TOTAL_SEGMENTS: b"\x02",
                          Tag.SAR_SEGMENT_SEQNUM: b"\x02", Tag.MESSAGE_PAYLOAD: b"payload wins"})
    inb = codec.inbound_from_deliver_sm(sar)
    assert inb.text == "payload wins" and inb.segment == Segment(300, 2, 2)

    bad_umr = DeliverSm(8, short_message=b"x", tlvs={Tag.USER_MESSAGE_REFERENCE: b"\x00\x00\x01"})
    assert codec.inbound_from_deliver_sm(bad_umr).user_message_reference is None


# ---------------------------------------------------------------------------------------------
# receipts


def test_parse_receipt_tlv_form():
    d = DeliverSm(1, esm_class=0x04, short_message=b"id:999 stat:UNDELIV err:001",
                  tlvs={Tag.RECEIPTED_MESSAGE_ID: b"0a1b2c\x00", Tag.MESSAGE_STATE: b"\x02", 0x1401: b"v"})
    assert codec.parse_receipt(d) == Receipt("0a1b2c", "DELIVRD", "001")
    for value, name in codec.MESSAGE_STATES.items():
        d.tlvs[Tag.MESSAGE_STATE] = bytes([value])
        assert codec.parse_receipt(d).state == name


def test_parse_receipt_text_form():
    text = "id:1234567890 sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:012 text:hello"
    d = DeliverSm(1, esm_class=0x04, short_message=text.encode())
    assert codec.parse_receipt(d) == Receipt("1234567890", "UNDELIV", "012")
    d.short_message = b"ID:ab_cd STAT:delivered ERR:0"
    assert codec.parse_receipt(d) == Receipt("ab_cd", "DELIVRD", "0")
    d.short_message = "id:x1 stat:EXPIRED".encode("utf-16-be")
    d.data_coding = 8
    assert codec.parse_receipt(d) == Receipt("x1", "EXPIRED", "")
    d.data_coding = 0
    d.short_message = b"id:x2"
    assert codec.parse_receipt(d) == Receipt("x2", "UNKNOWN", "")


def test_parse_receipt_none():
    assert codec.parse_receipt(DeliverSm(1, short_message=b"id:1 stat:DELIVRD")) is None  # not a receipt
    assert codec.parse_receipt(DeliverSm(1, esm_class=0x04, short_message=b"stat:DELIVRD")) is None  # no id
    assert codec.parse_receipt(DeliverSm(1, esm_class=0x04, short_message=b"\xff\x00garbage")) is None
    assert codec.parse_receipt(DeliverSm(1, esm_class=0x04, short_message=b"submit date:2401011200 stat:X")) is None


def test_format_receipt_text_round_trip():
    t = codec.format_receipt_text("00ab12", "DELIVRD", "000", datetime(2024, 1, 2, 3, 4), "2401020305", "a long message text over twenty")
    assert t == ("id:00ab12 sub:001 dlvrd:001 submit date:2401020304 done date:2401020305 "
                 "stat:DELIVRD err:000 text:a long message text ")
    d = DeliverSm(1, esm_class=0x04, short_message=t.encode())
    assert codec.parse_receipt(d) == Receipt("00ab12", "DELIVRD", "000")
    t2 = codec.format_receipt_text("z", "UNDELIV", "005")
    assert re.fullmatch(r"id:z sub:001 dlvrd:000 submit date:\d{10} done date:\d{10} stat:UNDELIV err:005 text:", t2)


# ---------------------------------------------------------------------------------------------
# message_payload NUL padding (issue 10)


def test_message_payload_trailing_nul_stripped():
    d = DeliverSm(1, source_addr="861", destination_addr="10086", data_coding=0,
                  tlvs={Tag.MESSAGE_PAYLOAD: b"0000\x00"})
    assert d.payload == b"0000"
    assert codec.inbound_from_deliver_sm(d).text == "0000"
    d = DeliverSm(1, data_coding=3, tlvs={Tag.MESSAGE_PAYLOAD: b"0000\x00\x00\x00"})
    assert codec.inbound_from_deliver_sm(d).text == "0000"
    # UCS-2: a trailing odd NUL and whole U+0000 units go, a character ending in 00 stays
    for raw in ("0000".encode("utf-16-be") + b"\x00", "0000".encode("utf-16-be") + b"\x00\x00\x00\x00"):
        d = DeliverSm(1, data_coding=8, tlvs={Tag.MESSAGE_PAYLOAD: raw})
        assert codec.inbound_from_deliver_sm(d).text == "0000"
    d = DeliverSm(1, data_coding=8, tlvs={Tag.MESSAGE_PAYLOAD: "ĀĀ".encode("utf-16-be") + b"\x00"})
    assert d.payload == b"\x01\x00\x01\x00"
    assert codec.inbound_from_deliver_sm(d).text == "ĀĀ"
    # with a UDH in front
    d = DeliverSm(1, esm_class=0x40, data_coding=0, tlvs={Tag.MESSAGE_PAYLOAD: b"\x05\x00\x03\x01\x02\x01ab\x00"})
    inb = codec.inbound_from_deliver_sm(d)
    assert (inb.text, inb.segment) == ("ab", Segment(1, 2, 1))


def test_binary_and_short_message_nuls_kept():
    for dc in (2, 4, 0xF4, 0x14):
        d = DeliverSm(1, data_coding=dc, tlvs={Tag.MESSAGE_PAYLOAD: b"\x01\x00\x00"})
        assert d.payload == b"\x01\x00\x00"
        assert codec.inbound_from_deliver_sm(d).text == "010000"
    for dc in (0, 2, 4, 8):
        d = DeliverSm(1, data_coding=dc, short_message=b"\x01\x00\x00")
        assert d.payload == b"\x01\x00\x00"  # short_message is never touched
    assert DeliverSm(1, tlvs={Tag.MESSAGE_PAYLOAD: b""}).payload == b""
    assert DeliverSm(1, tlvs={Tag.MESSAGE_PAYLOAD: b"\x00"}).payload == b""


# ---------------------------------------------------------------------------------------------
# receipts whatever the data_coding says (issue 10)

_ASCII_RECEIPT = (b"id:7f3a9c01 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201"
                  b" stat:DELIVRD err:000 text:\xe5\xb0\x8a\xe6\x95\xac")


def test_receipt_dc8_with_ascii_text_without_tlvs():
    d = DeliverSm(1, source_addr="861", destination_addr="10086", esm_class=0x04, data_coding=8,
                  short_message=_ASCII_RECEIPT)
    assert codec.parse_receipt(d) == Receipt("7f3a9c01", "DELIVRD", "000")
    # odd length (UCS-2 would leave a U+FFFD), and the text in message_payload with a NUL pad
    odd = b"id:42 stat:UNDELIV err:0b1 "
    assert len(odd) % 2 == 1
    assert codec.parse_receipt(DeliverSm(1, esm_class=0x04, data_coding=8, short_message=odd)) == Receipt(
        "42", "UNDELIV", "0b1")
    d = DeliverSm(1, esm_class=0x04, data_coding=8, tlvs={Tag.MESSAGE_PAYLOAD: odd + b"\x00"})
    assert codec.parse_receipt(d) == Receipt("42", "UNDELIV", "0b1")


def test_receipt_dc8_with_ascii_text_and_tlvs_keeps_err():
    d = DeliverSm(1, esm_class=0x04, data_coding=8, short_message=b"id:42 stat:UNDELIV err:0b1 text:x",
                  tlvs={Tag.RECEIPTED_MESSAGE_ID: b"42\x00", Tag.MESSAGE_STATE: b"\x05", Tag.NETWORK_ERROR_CODE: b"\x03\x00\xb1"})
    assert codec.parse_receipt(d) == Receipt("42", "UNDELIV", "0b1")
    d.short_message = _ASCII_RECEIPT
    d.tlvs[Tag.MESSAGE_STATE] = b"\x02"
    assert codec.parse_receipt(d) == Receipt("42", "DELIVRD", "000")


def test_receipt_dc0_with_utf16_text():
    raw = "id:ab12 sub:001 dlvrd:001 stat:DELIVRD err:000 text:你好".encode("utf-16-be")
    assert b"\x00" in raw
    for tlvs in ({}, {Tag.RECEIPTED_MESSAGE_ID: b"ab12\x00"}):
        d = DeliverSm(1, esm_class=0x04, data_coding=0, short_message=raw, tlvs=tlvs)
        assert codec.parse_receipt(d) == Receipt("ab12", "DELIVRD", "000")
    # dc=3 likewise
    assert codec.parse_receipt(DeliverSm(1, esm_class=0x04, data_coding=3, short_message=raw)).error == "000"


def test_receipt_genuine_ucs2_and_latin1_unchanged():
    d = DeliverSm(1, esm_class=0x04, data_coding=8, short_message="id:u1 stat:REJECTD err:099".encode("utf-16-be"))
    assert codec.parse_receipt(d) == Receipt("u1", "REJECTD", "099")
    d = DeliverSm(1, esm_class=0x04, data_coding=0, short_message=b"id:l$1 stat:ACCEPTD err:000\x00")
    assert codec.parse_receipt(d) == Receipt("l$1", "ACCEPTD", "000")  # a NUL left in the text is a space
    assert codec.receipt_text(8, b"\x4f\x60\x59\x7d") == "你好"  # no receipt keys either way: UCS-2 kept
    assert codec.receipt_text(0, b"a\x00b") == "a b"


# ---------------------------------------------------------------------------------------------
# reassembly from raw bytes (issue 10)


def _parts_through_deliver_sm(dc: int, bodies: list[bytes]) -> list[Inbound]:
    total = len(bodies)
    return [
        codec.inbound_from_deliver_sm(DeliverSm(
            i, source_addr="861", destination_addr="10086", esm_class=0x40, data_coding=dc,
            short_message=bytes((5, 0, 3, 9, total, i)) + body))
        for i, body in enumerate(bodies, 1)
    ]


def test_join_parts_ucs2_surrogate_pair_split():
    raw = "退订😀".encode("utf-16-be")  # 😀 = D83D DE00
    assert raw[4:6] == b"\xd8\x3d"
    parts = _parts_through_deliver_sm(8, [raw[:6], raw[6:]])
    assert [p.payload for p in parts] == [raw[:6], raw[6:]]
    assert all(p.data_coding == 8 for p in parts)
    assert "".join(p.text for p in parts) != "退订😀"  # part by part: two U+FFFD
    assert codec.join_parts(8, [p.payload for p in parts]) == "退订😀"


def test_join_parts_gsm7_escape_split():
    raw = codec.gsm7_encode("price 5€ ok")
    cut = raw.index(0x1B) + 1  # part 1 ends in ESC, part 2 starts with 0x65 ('e' in the main table)
    parts = _parts_through_deliver_sm(0, [raw[:cut], raw[cut:]])
    assert parts[1].payload[:1] == b"\x65"
    assert "".join(p.text for p in parts) == "price 5e ok"  # wrong part by part
    assert codec.join_parts(0, [p.payload for p in parts]) == "price 5€ ok"


def test_join_parts_other_cases():
    assert codec.join_parts(0, []) == ""
    assert codec.join_parts(0, [b"0000"]) == "0000"
    assert codec.join_parts(4, [b"\x01", b"\x02"]) == "0102"
    # sar_* parts carried in message_payload with NUL padding join too
    mp = [b"ab\x00", b"cd"]
    parts = [codec.inbound_from_deliver_sm(DeliverSm(i, data_coding=3, tlvs={
        Tag.SAR_MSG_REF_NUM: b"\x00\x01", Tag.SAR_TOTAL_SEGMENTS: b"\x02", Tag.SAR_SEGMENT_SEQNUM: bytes((i,)),
        Tag.MESSAGE_PAYLOAD: m})) for i, m in enumerate(mp, 1)]
    assert codec.join_parts(3, [p.payload for p in parts]) == "abcd"
    # existing positional construction still works
    assert Inbound("861", "10086", "0000", 1).payload == b""
