"""The chaos runner's bot-kill scenario (d) over CMPP 3.0 (`python -m bench.chaos --only d --protocol
cmpp3`): the chaos SMSC speaks CMPP (`bench.chaos.ismg`, its own struct-written wire), the bots
`smsc.protocol: cmpp3`; the same targets as over SMPP (`bench.chaos.runner.targets`)."""

from __future__ import annotations

import struct

from bench.chaos import ismg as I
from bench.chaos.runner import run_scenario
from tests.chaos_sizes import SIZES


def test_chaos_ismg_reads_a_submit_of_either_version():
    for version, term in ((0x30, 32), (0x20, 21)):
        s = I.CmppSession.__new__(I.CmppSession)
        s.version = version
        v3 = version == 0x30
        content = bytes((5, 0, 3, 9, 2, 1)) + "你好".encode("utf-16-be")
        body = b"".join((bytes(8), bytes((2, 1, 0, 0)), I.fixed("HELP", 10), b"\0", I.fixed("", term), b"\0" if v3 else b"",
                         bytes((0, 1, 8)), I.fixed("901234", 6), b"01", b"000000", bytes(34), I.fixed("10086", 21),
                         b"\x01", I.fixed("8613900000001", term), b"\0" if v3 else b"", bytes((len(content),)), content,
                         bytes(20 if v3 else 8)))
        sm = I.ChaosIsmg.parse_submit(s, body)
        assert (sm.source, sm.destination, sm.esm_class, sm.data_coding, sm.payload) == (
            "10086", "13900000001", I.ESM_UDHI, 8, content)
    assert struct.unpack_from(">III", I.header(I.ACTIVE_TEST_RESP, 7, b"\0")) == (13, I.ACTIVE_TEST_RESP, 7)


def test_bot_kills_over_cmpp_meet_the_smpp_targets():
    row = run_scenario("d", SIZES.scaled(protocol="cmpp3"))
    assert not row.get("error"), row.get("error")
    assert row["bot_kills"] == 2 and row["binds"] >= 4, row
    assert row["mos"] >= SIZES.rate * SIZES.traffic_s * 0.3, row
    assert row["failed"] == [], {k: row[k] for k in ("failed", "targets", "unanswered", "replies_twice", "submits_twice")}
    assert row["charges"], row  # the billing run happened and charged the seeded subscriptions
