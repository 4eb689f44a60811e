"""The CMPP codec by example: exact layouts for 3.0 and 2.0, what it accepts, what it refuses.

Properties over generated PDUs are in test_cmpp_properties.py; Wireshark's dissector checks the
layouts independently in test_cmpp_tshark.py.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import datetime

import pytest

from smsbot import cmpp
from smsbot.cmpp import auth, text
from smsbot.cmpp.codec import decode, decode_report, encode
from smsbot.cmpp.framing import Framer
from smsbot.cmpp.msgid import MsgId

pytestmark = pytest.mark.unit

V30, V20 = 0x30, 0x20


def body_of(pdu: cmpp.Pdu, version: int) -> bytes:
    raw = encode(pdu, 1, version)
    length, command_id, seq = struct.unpack(">III", raw[:12])
    assert length == len(raw) and command_id == pdu.COMMAND and seq == 1
    return raw[12:]


def submit(**kw) -> cmpp.Submit:
    base = dict(dest_terminal_ids=["8613800138000"], msg_content=b"hello", src_id="10086", msg_src="901234",
                service_id="MENU")
    return cmpp.Submit(**{**base, **kw})


# ---------------------------------------------------------------------------------------------- layouts


def test_submit_30_layout_field_by_field():
    s = submit(fee=cmpp.Fee.monthly(500), registered_delivery=1, link_id="LK1", valid_time="", at_time="")
    b = body_of(s, V30)
    assert len(b) == 183 + 5
    assert b[0:8] == bytes(8)  # Msg_Id 0 from the SP
    assert b[8:12] == bytes([1, 1, 1, 0])  # Pk_total, Pk_number, Registered_Delivery, Msg_level
    assert b[12:22] == b"MENU" + bytes(6)
    assert b[22] == 0 and b[23:55] == bytes(32) and b[55] == 0  # Fee_UserType, Fee_terminal_Id, _type
    assert b[56:59] == bytes([0, 0, 0])  # TP_pId, TP_udhi, Msg_Fmt
    assert b[59:65] == b"901234" and b[65:67] == b"03" and b[67:73] == b"000500"
    assert b[73:90] == bytes(17) and b[90:107] == bytes(17)
    assert b[107:128] == b"10086" + bytes(16)
    assert b[128] == 1 and b[129:161] == b"8613800138000" + bytes(19) and b[161] == 0
    assert b[162] == 5 and b[163:168] == b"hello"
    assert b[168:188] == b"LK1" + bytes(17)


def test_submit_20_layout_has_short_ids_no_types_and_a_reserve():
    b = body_of(submit(fee=cmpp.Fee.per_message(10)), V20)
    assert len(b) == 147 + 5
    assert b[22] == 0 and b[23:44] == bytes(21)  # Fee_UserType, Fee_terminal_Id (21)
    assert b[44:47] == bytes([0, 0, 0]) and b[47:53] == b"901234" and b[53:55] == b"02" and b[55:61] == b"000010"
    assert b[116] == 1 and b[117:138] == b"8613800138000" + bytes(8)
    assert b[138] == 5 and b[139:144] == b"hello" and b[144:152] == bytes(8)


def test_deliver_and_report_layouts_both_versions():
    mo = cmpp.Deliver(msg_id=0x0102030405060708, dest_id="10086", src_terminal_id="13800138000",
                      msg_content=b"0000", service_id="SVC", link_id="L")
    b30 = body_of(mo, V30)
    b20 = body_of(cmpp.Deliver(msg_id=mo.msg_id, dest_id="10086", src_terminal_id="13800138000",
                               msg_content=b"0000", service_id="SVC"), V20)
    assert len(b30) == 97 + 4 and len(b20) == 73 + 4
    assert b30[:8] == bytes.fromhex("0102030405060708") and b30[8:29] == b"10086" + bytes(16)
    assert b30[29:39] == b"SVC" + bytes(7) and b30[39:42] == bytes(3)
    assert b30[42:74] == b"13800138000" + bytes(21) and b30[74:77] == bytes([0, 0, 4])
    assert b30[77:81] == b"0000" and b30[81:] == b"L" + bytes(19)
    assert b20[42:63] == b"13800138000" + bytes(10) and b20[63:65] == bytes([0, 4]) and b20[65:69] == b"0000"
    assert b20[69:] == bytes(8)
    report = cmpp.StatusReport(0x11, "DELIVRD", "2503140930", "2503140931", "8613800138000", 9)
    r30 = cmpp.encode_report(report, V30)
    r20 = cmpp.encode_report(report, V20)
    assert len(r30) == 71 and len(r20) == 60
    assert r30[8:15] == b"DELIVRD" and r30[15:25] == b"2503140930" and r30[35:67] == b"8613800138000" + bytes(19)
    assert r30[67:] == struct.pack(">I", 9) and r20[56:] == struct.pack(">I", 9)
    d = body_of(cmpp.Deliver(msg_id=1, dest_id="10086", src_terminal_id="8613800138000", report=report), V30)
    assert d[75] == 1 and d[76] == 71 and d[77:148] == r30


def test_responses_have_4_octet_results_in_30_and_1_in_20():
    assert body_of(cmpp.SubmitResp(7, 8), V30) == struct.pack(">QI", 7, 8)
    assert body_of(cmpp.SubmitResp(7, 8), V20) == struct.pack(">QB", 7, 8)
    assert body_of(cmpp.DeliverResp(7, 0), V20) == struct.pack(">QB", 7, 0)
    resp = cmpp.ConnectResp(3, bytes(16), V20)
    assert body_of(resp, V30) == struct.pack(">I", 3) + bytes(16) + b"\x20"
    assert body_of(resp, V20) == b"\x03" + bytes(16) + b"\x20"
    assert body_of(cmpp.ActiveTestResp(), V30) == b"\x00"
    assert body_of(cmpp.ActiveTest(), V30) == b"" and body_of(cmpp.Terminate(), V20) == b""


def test_connect_and_authenticators():
    ts = auth.timestamp(datetime(2025, 3, 14, 9, 30, 0))
    assert ts == 314093000 and auth.timestamp_digits(ts) == b"0314093000"
    source = auth.authenticator_source("901234", "secret", ts)
    assert source.hex() == "d665f1f69c2cd100537739958ff34fc9"  # MD5("901234" + 9 NUL + "secret" + "0314093000")
    assert source == hashlib.md5(b"901234" + b"\0" * 9 + b"secret" + b"0314093000").digest()
    assert auth.authenticator_ismg(0, source, "secret", V30).hex() == "a697099adeb17b4dc3cba69ddd11a3e0"
    assert auth.authenticator_ismg(0, source, "secret", V20).hex() == "7591acba1682f40308ab57cfe94cf886"
    assert auth.source_ok("901234", "secret", ts, source)
    assert not auth.source_ok("901234", "Secret", ts, source)
    assert not auth.source_ok("901234", "secret", ts + 1, source)
    assert auth.ismg_ok(0, source, "secret", V30, bytes.fromhex("a697099adeb17b4dc3cba69ddd11a3e0"))
    assert not auth.ismg_ok(0, source, "secret", V30, auth.EMPTY)
    b = body_of(cmpp.Connect("901234", source, V30, ts), V30)
    assert b == b"901234" + source + b"\x30" + struct.pack(">I", 314093000)


def test_msg_id_bits():
    mid = MsgId(month=3, day=14, hour=9, minute=30, second=0, gateway=0x12345, sequence=7)
    assert mid.pack() == 0x3725E00123450007
    assert MsgId.unpack(0x3725E00123450007) == mid
    assert MsgId.at(datetime(2025, 3, 14, 9, 30, 0), 0x12345, 0x10007) == mid  # sequence wraps at 16 bits
    assert cmpp.msgid.text(0x3725E00123450007) == "3725e00123450007"
    with pytest.raises(ValueError, match="gateway"):
        MsgId(1, 1, 1, 1, 1, 1 << 22, 0).pack()


# ---------------------------------------------------------------------------------------------- strict


@pytest.mark.parametrize("pdu, version, message", [
    (submit(service_id="TOO-LONG-ID"), V30, "Service_Id 'TOO-LONG-ID' is longer than its 10 octets"),
    (submit(src_id="１００８６"), V30, "Src_Id '１００８６' is not ASCII"),
    (submit(link_id="L"), V20, "CMPP 2.0 has no LinkID"),
    (submit(dest_terminal_type=1), V20, "CMPP 2.0 has no Dest_terminal_type"),
    (submit(dest_terminal_ids=["8613800138000" + "0" * 10]), V20, "longer than its 21 octets"),
    (submit(fee=cmpp.Fee("02", "5")), V30, "FeeCode '5' is not 6 digits"),
    (submit(fee=cmpp.Fee("01", "000100")), V30, "FeeType 01 \\(free\\) with FeeCode 000100"),
    (submit(fee=cmpp.Fee("07")), V30, "FeeType '07' is not one of"),
    (submit(fee=cmpp.Fee(user_type=3)), V30, "Fee_terminal_Id is given exactly when Fee_UserType is 3"),
    (submit(msg_content=b"x" * 141, msg_fmt=8), V30, "longer than 140"),
    (submit(msg_content=b"x" * 160), V30, "longer than 159"),
    (submit(pk_total=2, pk_number=3), V30, "Pk_number 3 is not within 1..Pk_total"),
    (submit(dest_terminal_ids=[]), V30, "0 destinations"),
    (cmpp.SubmitResp(1 << 64), V30, "Msg_Id .* does not fit 8"),
    (cmpp.SubmitResp(1, 256), V20, "Result 256 does not fit 1"),
    (cmpp.Deliver(1, "10086", "1380013800", src_terminal_type=1), V20, "CMPP 2.0 has no Src_terminal_type"),
    (cmpp.Connect("901234", b"short"), V30, "AuthenticatorSource must be 16 octets"),
])
def test_encoding_refuses_what_the_spec_does_not_allow(pdu, version, message):
    with pytest.raises(ValueError, match=message):
        encode(pdu, 1, version)


def test_fee_helpers():
    assert cmpp.Fee.per_message(500) == cmpp.Fee("02", "000500")
    assert cmpp.Fee.monthly(1500).fen == 1500 and cmpp.Fee.monthly(0).problem() is None
    assert cmpp.FREE.problem() is None and (cmpp.FREE.fee_type, cmpp.FREE.fee_code) == ("01", "000000")
    assert cmpp.Fee.per_message(1, user_type=3, terminal_id="8613800138000").problem() is None
    with pytest.raises(ValueError, match="fee 1000000 fen is not 0..999999"):
        cmpp.Fee.monthly(1_000_000)


# ---------------------------------------------------------------------------------------------- liberal


def _deliver_30_body(src: bytes, dest: bytes, declared: int, content: bytes, tail: bytes) -> bytes:
    """A 3.0 DELIVER written by hand, padding as given."""
    return (struct.pack(">Q", 5) + dest + b"SVC".ljust(10, b" ") + bytes([0, 0, 0]) + src + b"\x00\x00"
            + bytes([declared]) + content + tail)


def test_space_padded_fields_read_like_nul_padded():
    body = _deliver_30_body(b"13800138000".ljust(32, b" "), b"10086".ljust(21, b" "), 4, b"0000", b" " * 20)
    d = decode(cmpp.CommandId.DELIVER, body, V30)
    assert (d.src_terminal_id, d.dest_id, d.service_id, d.link_id, d.msg_content) == (
        "13800138000", "10086", "SVC", "", b"0000")


@pytest.mark.parametrize("declared, content, tail, want_content, want_link", [
    (4, b"0000", b"LINK".ljust(20, b"\0"), b"0000", "LINK"),  # as the spec says
    (9, b"0000", b"LINK".ljust(20, b"\0"), b"0000", "LINK"),  # Msg_Length too large: the body wins
    (2, b"0000", b"LINK".ljust(20, b"\0"), b"0000", "LINK"),  # too small
    (4, b"0000", b"", b"0000", ""),  # no LinkID at all (a gateway that leaves it out)
    (0, b"0000", b"", b"0000", ""),  # no LinkID, Msg_Length 0: what is there is the content
])
def test_msg_length_disagreeing_with_the_body(declared, content, tail, want_content, want_link):
    body = _deliver_30_body(b"13800138000".ljust(32, b"\0"), b"10086".ljust(21, b"\0"), declared, content, tail)
    d = decode(cmpp.CommandId.DELIVER, body, V30)
    assert (d.msg_content, d.link_id) == (want_content, want_link)


def test_a_20_response_on_a_30_connection_is_read_by_its_length():
    assert decode(cmpp.CommandId.SUBMIT_RESP, struct.pack(">QB", 9, 8), V30) == cmpp.SubmitResp(9, 8)
    assert decode(cmpp.CommandId.SUBMIT_RESP, struct.pack(">QI", 9, 8), V20) == cmpp.SubmitResp(9, 8)
    resp = decode(cmpp.CommandId.CONNECT_RESP, b"\x03" + bytes(16) + b"\x20", V30)
    assert resp == cmpp.ConnectResp(3, bytes(16), 0x20)


def test_unknown_msg_fmt_and_commands_are_kept_raw():
    body = _deliver_30_body(b"1".ljust(32, b"\0"), b"2".ljust(21, b"\0"), 3, b"\xff\xfe\x01", bytes(20))
    body = body[:39] + bytes([0, 0, 77]) + body[42:]
    d = decode(cmpp.CommandId.DELIVER, body, V30)
    assert d.msg_fmt == 77 and d.msg_content == b"\xff\xfe\x01"
    assert decode(cmpp.CommandId.QUERY_RESP, b"abc", V30) == cmpp.Unknown(cmpp.CommandId.QUERY_RESP, b"abc")
    assert decode(0x12345678, b"", V20) == cmpp.Unknown(0x12345678, b"")
    assert decode(cmpp.CommandId.ACTIVE_TEST_RESP, b"", V30) == cmpp.ActiveTestResp(0)
    assert decode(cmpp.CommandId.ACTIVE_TEST, b"\x00junk", V30) == cmpp.ActiveTest()


def test_a_report_is_read_by_its_length_whatever_the_connection():
    report = cmpp.StatusReport(0x11, "UNDELIV", "2503140930", "2503140931", "13800138000", 4)
    assert decode_report(cmpp.encode_report(report, V20), V30) == report  # 60 octets on a 3.0 connection
    assert decode_report(cmpp.encode_report(report, V30), V20) == report  # 71 octets on a 2.0 one
    carrier = cmpp.Deliver(1, "10086", "13800138000", msg_content=cmpp.encode_report(report, V20))
    body = bytearray(body_of(carrier, V30))
    body[75] = 1  # Registered_Delivery
    assert decode(cmpp.CommandId.DELIVER, bytes(body), V30).report == report


def test_what_can_never_be_read_is_a_cmpp_error():
    with pytest.raises(cmpp.CmppError, match="CMPP_DELIVER cut short: Src_terminal_Id needs 32 octet"):
        decode(cmpp.CommandId.DELIVER, bytes(50), V30)
    with pytest.raises(cmpp.CmppError, match="status report of 10 octets: expected 71 \\(3.0\\) or 60 \\(2.0\\)"):
        decode_report(bytes(10), V30)
    with pytest.raises(cmpp.CmppError, match="CMPP_SUBMIT_RESP cut short"):
        decode(cmpp.CommandId.SUBMIT_RESP, bytes(5), V30)
    with pytest.raises(cmpp.CmppError, match="CMPP_CONNECT cut short"):
        decode(cmpp.CommandId.CONNECT, b"901234", V30)


# ---------------------------------------------------------------------------------------------- framing


def test_framer_partial_pdus_across_reads_and_several_in_one():
    a = encode(cmpp.ActiveTest(), 1, V30)
    b = encode(cmpp.SubmitResp(42, 0), 2, V30)
    c = encode(submit(), 3, V30)
    stream = a + b + c
    f = Framer()
    frames = []
    for i in range(len(stream)):  # one octet at a time
        frames += f.feed(stream[i:i + 1])
        assert f.buffered == (i + 1 - sum(12 + len(x.body) for x in frames))
    assert [(x.command_id, x.sequence) for x in frames] == [(8, 1), (0x80000004, 2), (4, 3)]
    assert Framer().feed(stream) == frames


def test_framer_refuses_a_bad_length_as_soon_as_it_is_visible():
    good = encode(cmpp.ActiveTest(), 1, V30)
    f = Framer(max_len=100)
    with pytest.raises(cmpp.FramingError, match=r"bad Total_Length 101 \(must be 12..100\)") as e:
        f.feed(good + struct.pack(">I", 101))
    assert [x.command_id for x in e.value.frames] == [cmpp.CommandId.ACTIVE_TEST]
    with pytest.raises(cmpp.FramingError):  # broken for good
        f.feed(good)
    with pytest.raises(cmpp.FramingError, match="bad Total_Length 11"):
        Framer().feed(struct.pack(">I", 11))


# ---------------------------------------------------------------------------------------------- text


def test_ascii_fits_159_octets_then_goes_in_153_octet_parts():
    assert text.split_text("a" * 159).contents == [b"a" * 159]
    parts = text.split_text("a" * 160, ref=7)
    assert parts.msg_fmt == 0 and parts.tp_udhi == 1
    assert parts.contents == [bytes([5, 0, 3, 7, 2, 1]) + b"a" * 153, bytes([5, 0, 3, 7, 2, 2]) + b"a" * 7]


def test_ucs2_parts_never_cut_a_surrogate_pair_and_join_back():
    message = "菜单" * 33 + "😀" + "尾" * 40  # the emoji would straddle octet 134
    parts = text.split_text(message, ref=1)
    assert parts.msg_fmt == 8 and all(len(c) <= 140 for c in parts.contents)
    payloads = [text.split_content(1, c)[0] for c in parts.contents]
    assert payloads[0].endswith("单".encode("utf-16-be")) and len(payloads[0]) == 132
    assert text.join_parts(8, payloads) == message
    segments = [text.split_content(1, c)[1] for c in parts.contents]
    assert [(s.ref, s.total, s.seq) for s in segments] == [(1, 2, 1), (1, 2, 2)]


def test_gbk_keeps_double_byte_characters_whole():
    message = "a" + "退订" * 70
    parts = text.split_text(message, msg_fmt=cmpp.MsgFmt.GBK, ref=2)
    payloads = [text.split_content(1, c)[0] for c in parts.contents]
    assert [len(p) for p in payloads] == [133, 134, 14]  # 1 + 66 × 2: a 67th character would need octets 134-135
    assert all(p.decode("gbk") for p in payloads)
    assert text.join_parts(15, payloads) == message


def test_decoding_texts():
    assert text.decode_text(15, "退订".encode("gbk")) == "退订"
    assert text.decode_text(0, "退订".encode("gbk")) == "退订"  # Chinese under Msg_Fmt 0
    assert text.decode_text(0, b"\xff\xff") == "\xff\xff"  # not GBK: Latin-1
    assert text.decode_text(8, b"\x00A\x00") == "A\ufffd"
    assert text.decode_text(4, b"\x01\xab") == "01ab"
    with pytest.raises(ValueError, match="'菜' cannot be written in Msg_Fmt 0"):
        text.split_text("菜", msg_fmt=0)
    with pytest.raises(ValueError, match="Msg_Fmt 4 is not a text format"):
        text.split_text("binary?", msg_fmt=4)
    with pytest.raises(ValueError, match="needs 256 parts"):
        text.split_text("a" * 153 * 256)
