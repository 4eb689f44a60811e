"""`smsbot.submits.SmppSubmits`: a reply's submit_sm bodies, whose fields it encodes once per short
code and settings, read back field by field; a reload's settings are the next reply's."""

from __future__ import annotations

import pytest

from smsbot import pdu
from smsbot.submits import SmppSubmits
from tests.helpers import make_live

pytestmark = pytest.mark.unit


def decoded(bodies: list[bytes]):
    return [pdu.decode_submit_sm(1, b)[0] for b in bodies]


def test_every_part_carries_the_settings_fields_its_destination_and_its_text(unit_settings):
    submits = SmppSubmits(make_live(unit_settings(**{"smsc.registered_delivery": 1})))
    one = decoded(submits.parts("13800138000", "10086", "hello", {}))
    long = decoded(submits.parts("+447700900123", "10010", "x" * 200, {}))
    assert [(m.source_addr, m.destination_addr, m.short_message, m.esm_class) for m in one] == [
        ("10086", "8613800138000", b"hello", 0)]  # TON 1: the country code in front of the key
    assert [(m.source_addr, m.destination_addr, m.esm_class, m.short_message[6:]) for m in long] == [
        ("10010", "447700900123", 0x40, b"x" * 153), ("10010", "447700900123", 0x40, b"x" * 47)]
    assert long[0].short_message[:6] == bytes((5, 0, 3, long[0].short_message[3], 2, 1))
    assert {(m.registered_delivery, m.dest_addr_ton, m.data_coding) for m in one + long} == {(1, 1, 0)}
    ucs2 = decoded(submits.parts("13800138000", "10086", "你好", {}))
    assert [(m.data_coding, m.short_message) for m in ucs2] == [(8, "你好".encode("utf-16-be"))]


def test_a_reload_s_settings_are_the_next_reply_s(unit_settings):
    live = make_live(unit_settings())
    submits = SmppSubmits(live)
    [before] = decoded(submits.parts("13800138000", "10086", "hello", {}))
    assert (before.destination_addr, before.dest_addr_ton, before.registered_delivery) == ("8613800138000", 1, 0)
    new = unit_settings(**{"smsc.dest_addr_ton": 2, "smsc.source_addr_ton": 3, "smsc.registered_delivery": 1})
    live.swap(new, live.router)
    [after] = decoded(submits.parts("13800138000", "10086", "hello", {}))
    assert (after.destination_addr, after.dest_addr_ton, after.source_addr_ton, after.registered_delivery) == (
        "13800138000", 2, 3, 1)
