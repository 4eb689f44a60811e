"""pdu.redacted_hex: rejected PDUs can be logged as hex without any phone number in them."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from smsbot import pdu
from smsbot.messages import CommandId, DeliverSm, SubmitSm, Tag

MSISDN = "8613912345678"


def _has_number(hexstr: str, number: str) -> bool:
    raw = bytes.fromhex(hexstr)
    return number.encode() in raw or number.encode().hex() in hexstr or number in hexstr


def test_deliver_sm_addresses_masked_keeping_two_digits():
    d = DeliverSm(1, service_type="CMT", source_addr=MSISDN, destination_addr="10086", short_message=b"0000",
                  tlvs={0x1401: b"v"})
    body = pdu.encode_deliver_sm(d)[16:]
    out = pdu.redacted_hex(CommandId.DELIVER_SM, body)
    assert not _has_number(out, MSISDN)
    back = pdu.decode_deliver_sm(1, bytes.fromhex(out))  # still parses: only digit octets changed
    assert back.source_addr == "*" * 11 + "78"
    assert back.destination_addr == "***86"
    assert (back.service_type, back.short_message, back.tlvs) == ("CMT", b"0000", {0x1401: b"v"})
    assert len(out) == 2 * len(body)


def test_submit_sm_and_data_sm_masked():
    sm = SubmitSm("10086", "+" + MSISDN, "call 13912345678 now".encode())
    body = pdu.encode_submit_sm(sm, 5)[16:]
    out = pdu.redacted_hex(int(CommandId.SUBMIT_SM), body)
    assert not _has_number(out, MSISDN) and "13912345678" not in bytes.fromhex(out).decode("latin-1")
    back, _ = pdu.decode_submit_sm(5, bytes.fromhex(out))
    assert back.destination_addr == "+" + "*" * 11 + "78"
    assert back.short_message == b"call *********** now"  # a number in the text is masked too
    d = DeliverSm(2, source_addr=MSISDN, destination_addr="10086",
                  tlvs={Tag.MESSAGE_PAYLOAD: MSISDN.encode("utf-16-be")})
    out = pdu.redacted_hex(CommandId.DATA_SM, pdu.encode_data_sm(d)[16:])
    back = pdu.decode_data_sm(2, bytes.fromhex(out))
    assert back.source_addr.endswith("78") and MSISDN[:-2] not in back.source_addr
    assert MSISDN not in back.payload.decode("utf-16-be", "replace")


def test_unparsable_body_masks_digit_runs():
    # no NUL after the source address: the layout cannot be followed
    body = b"\x00\x01\x01" + MSISDN.encode() + b" 1234 98765"
    out = bytes.fromhex(pdu.redacted_hex(CommandId.DELIVER_SM, body))
    assert out == b"\x00\x01\x01" + b"*" * 13 + b" 1234 *****"
    # unknown command: only runs of 5+ digits
    assert bytes.fromhex(pdu.redacted_hex(0x12345, b"id:12 tel 8613912345678\x00")) == b"id:12 tel " + b"*" * 13 + b"\x00"
    assert pdu.redacted_hex(CommandId.DELIVER_SM, b"") == ""
    full_width = "１３８００１３８０００".encode("utf-16-be")
    assert b"*" * len(full_width) in bytes.fromhex(pdu.redacted_hex(0, full_width))


def test_bind_password_masked():
    body = pdu.encode_bind(CommandId.BIND_TRANSCEIVER, 1, "sys", "secret")[16:]
    out = bytes.fromhex(pdu.redacted_hex(CommandId.BIND_TRANSCEIVER, body))
    assert b"secret" not in out
    assert pdu.decode_bind(out)["password"] == "******"
    assert bytes.fromhex(pdu.redacted_hex(CommandId.BIND_RECEIVER, b"syssecret")) == b"*" * 9


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([0x4, 0x5, 0x103, 0x9, 0x15, 0x80000005]))
def test_never_raises_and_keeps_length(data, cid):
    out = pdu.redacted_hex(cid, data)
    assert len(out) == 2 * len(data)
    masked = bytes.fromhex(out)
    assert not re.search(rb"[0-9]{5}", masked)  # no run of 5 ASCII digits survives
    assert all(a == b or b == 0x2A for a, b in zip(data, masked))


def test_accepts_memoryview_and_bytearray():
    body = pdu.encode_deliver_sm(DeliverSm(1, source_addr=MSISDN, destination_addr="10086"))[16:]
    expected = pdu.redacted_hex(5, body)
    assert pdu.redacted_hex(5, bytearray(body)) == expected == pdu.redacted_hex(5, memoryview(body))
    assert MSISDN[:-2].encode() not in bytes.fromhex(expected)
