"""The simulated ISMG's fault modes, field profile and control API, over real TCP and HTTP on
127.0.0.1, with the tests' CMPP SP (tests/cmpp_sp.py). The bot against them: test_e2e_ismg_cli.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any, Iterator

import pytest

from smsbot import cmpp
from smsbot.cmpp import text
from smsbot.cmpp.constants import Result
from smsbot.simulator.ismg import SimIsmg
from tests.api_client import json_call
from tests.helpers import wait_until

from .cmpp_sp import SECRET, SP_ID, Sp

MSISDN = "13800138000"
CODE = "10086"
NOW = datetime(2025, 3, 14, 9, 31, 7)


@pytest.fixture
def ismg() -> Iterator[SimIsmg]:
    sim = SimIsmg(SP_ID, SECRET, response_timeout=2.0, redeliver_seconds=0.1, clock=lambda: NOW, control=True,
                  short_codes=[CODE]).start()
    yield sim
    sim.stop()


@pytest.fixture
def sps() -> Iterator[list[Sp]]:
    opened: list[Sp] = []
    yield opened
    for sp in opened:
        sp.close()


def open_sp(ismg: SimIsmg, sps: list[Sp], **kw: Any) -> Sp:
    sp = Sp.open(ismg.port, **kw)
    sps.append(sp)
    return sp


def submit(message: str = "hello", dest: str = MSISDN, registered: int = 0) -> cmpp.Submit:
    parts = text.split_text(message, None, ref=1)
    return cmpp.Submit([dest], parts.contents[0], parts.msg_fmt, src_id=CODE, msg_src=SP_ID, service_id="HELP",
                       registered_delivery=registered)


def call(ismg: SimIsmg, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return json_call(ismg.control_url, method, path, body)


def stored(ismg: SimIsmg, msisdn: str = MSISDN) -> list[str]:
    return [m.text for m in ismg.mailbox.peek(msisdn)]


# ------------------------------------------------------------------------------------------ faults
def test_throttle_first_answers_result_8_and_stores_nothing(ismg, sps):
    assert call(ismg, "POST", "/faults", {"throttle_first": 1})[1]["throttle_status"] == Result.FLOW_CONTROL
    sp = open_sp(ismg, sps)
    first, second = sp.submit(submit("one")), sp.submit(submit("one"))
    assert (first.result, first.msg_id) == (Result.FLOW_CONTROL, 0) and second.result == 0
    assert stored(ismg) == ["one"] and ismg.stats()["submits_throttled"] == 1
    assert [e["status"] for e in call(ismg, "GET", "/submits")[1]["submits"]] == [8, 0]


def test_reject_per_destination_with_a_result(ismg, sps):
    ismg.set_faults(reject={MSISDN: 12})
    sp = open_sp(ismg, sps)
    assert sp.submit(submit()).result == 12 and sp.submit(submit(dest="13900139000")).result == 0
    assert stored(ismg) == [] and stored(ismg, "13900139000") == ["hello"]


def test_a_status_cmpp_cannot_carry_is_refused(ismg):
    status, body = call(ismg, "POST", "/faults", {"throttle_first": 1, "throttle_status": 300})
    assert status == 400 and "at most 255" in body["error"]


def test_drop_after_submit_answers_nothing_and_stores_nothing(ismg, sps):
    ismg.set_faults(drop_after_submit=1)
    sp = open_sp(ismg, sps)
    assert sp.request(submit("lost"), timeout=5) is None and sp.closed.is_set()
    assert stored(ismg) == [] and ismg.submit_log()[0]["status"] is None
    again = open_sp(ismg, sps)
    assert again.submit(submit("lost")).result == 0 and stored(ismg) == ["lost"]
    assert ismg.stats()["submits_dropped"] == 1


def test_drop_after_resp_answers_stores_once_then_closes(ismg, sps):
    ismg.set_faults(drop_after_resp=1)
    sp = open_sp(ismg, sps)
    resp = sp.submit(submit("kept"))
    assert resp.result == 0 and resp.msg_id
    assert sp.wait_for(lambda: sp.closed.is_set()) and stored(ismg) == ["kept"]
    assert wait_until(lambda: ismg.stats().get("connections_dropped") == 1, 5)  # counted just after the FIN


def test_delayed_resps_keep_their_order(ismg, sps):
    ismg.set_faults(resp_delay_ms=200)
    sp = open_sp(ismg, sps)
    seqs = [sp._write(submit(f"m{i}")) for i in range(3)]
    assert sp.wait_for(lambda: sum(w.who == "ismg" for w in sp.wire) >= 4)  # CONNECT_RESP + 3
    resps = [w for w in sp.wire if w.who == "ismg" and isinstance(w.pdu, cmpp.SubmitResp)]
    assert [int.from_bytes(w.data[8:12], "big") for w in resps] == seqs
    assert stored(ismg) == ["m0", "m1", "m2"]


def test_a_partial_pdu_then_silence_and_mos_wait_for_the_next_connection(ismg, sps):
    sp = open_sp(ismg, sps)
    status, out = call(ismg, "POST", "/partial", {"octets": 10})
    assert status == 200 and out["announced"] == 200
    mo = ismg.inject_mo(MSISDN, CODE, "0000")
    assert wait_until(lambda: ismg.mo_status(mo["id"])["state"] == "queued" and
                      ismg.jobs("mo")[0]["attempts"] == 0, 5)
    assert ismg.binds() == []  # a wedged connection carries nothing
    fresh = open_sp(ismg, sps)
    assert ismg.wait_mo(mo["id"])["state"] == "delivered"
    assert fresh.wait_for(lambda: bool(fresh.delivers))  # the SP notes it after answering
    assert [d.msg_content for _seq, d in fresh.delivers] == [b"0000"] and sp.delivers == []


# ------------------------------------------------------------------------------------ field profile
def test_field_profile_space_padding_gbk_international_source_and_reused_msg_ids(ismg, sps):
    desc = ismg.set_profile("field", msg_id_cycle=2)
    assert desc["overrides"] == {"msg_id_cycle": 2}
    sp = open_sp(ismg, sps)
    mo = ismg.inject_mo(MSISDN, CODE, "退订")
    assert ismg.wait_mo(mo["id"])["state"] == "delivered"
    wire = next(w for w in sp.wire if w.who == "ismg" and isinstance(w.pdu, cmpp.Deliver))
    body = wire.data[12:]
    assert body[8:29] == CODE.encode() + b" " * 16  # Dest_Id
    assert body[29:39] == b" " * 10  # Service_Id
    assert body[42:74] == b"86" + MSISDN.encode() + b" " * 19  # Src_terminal_Id
    assert body[-20:] == b"00000000000000000001"  # LinkID: whole, no padding left
    assert b"\x00" not in body[8:39]
    d = wire.pdu
    assert (d.msg_fmt, d.msg_content, d.src_terminal_id) == (15, "退订".encode("gbk"), "86" + MSISDN)
    ids = [sp.submit(submit(f"m{i}", registered=1)).msg_id for i in range(3)]
    assert ids[0] == ids[2] != ids[1]
    # every report is delivered, the reused id's included
    assert sp.wait_for(lambda: sum(d.report is not None for _s, d in sp.delivers) == 3)
    reports = [d for _s, d in sp.delivers if d.report is not None]
    assert [r.report.msg_id for r in reports] == ids


def test_profile_flags_are_checked(ismg):
    for body, needle in (({"padding": "tabs"}, "padding"), ({"mo_msg_fmt": 4}, "mo_msg_fmt"),
                         ({"profile": "odd"}, "unknown profile"), ({"sequence_start": 1}, "unknown CMPP profile flag")):
        status, answer = call(ismg, "POST", "/profile", body)
        assert status == 400 and needle in answer["error"], (body, answer)


def test_receipt_outcomes_as_the_page_sets_them(ismg, sps):
    ismg.set_profile(receipt_outcomes={MSISDN: "UNDELIV:034"})
    sp = open_sp(ismg, sps)
    sp.submit(submit(registered=1))
    assert sp.wait_for(lambda: any(d.report is not None for _s, d in sp.delivers))
    assert next(d for _s, d in sp.delivers if d.report).report.stat == "UNDELIV"


# -------------------------------------------------------------------------------------- control API
def test_control_api_speaks_for_the_ismg(ismg, sps):
    status, health = call(ismg, "GET", "/healthz")
    assert status == 200 and health == {"ok": True, "protocol": "cmpp", "cmpp_port": ismg.port, "binds": 0}
    sp = open_sp(ismg, sps)
    assert wait_until(lambda: call(ismg, "GET", "/binds")[1]["binds"] != [], 5)
    assert call(ismg, "GET", "/binds")[1]["binds"][0]["mode"] == "CMPP 3.0"
    status, err = call(ismg, "POST", "/mo", {"from": MSISDN, "to": CODE, "text": "x", "split": "sar"})
    assert status == 400 and "not on CMPP: split" in err["error"]
    status, mo = call(ismg, "POST", "/mo", {"from": MSISDN, "to": CODE, "text": "0000", "msg_fmt": 15})
    assert status == 202 and mo["msg_fmt"] == 15
    assert ismg.wait_mo(mo["id"])["state"] == "delivered"
    assert sp.wait_for(lambda: bool(sp.delivers)) and sp.delivers[0][1].msg_fmt == 15  # noted after answering
    sp.submit(submit("菜单", registered=1))
    status, got = call(ismg, "GET", f"/inbox/{MSISDN}?wait=5")
    assert [m["text"] for m in got["messages"]] == ["菜单"]

    def items() -> list[dict[str, Any]]:
        return call(ismg, "GET", f"/web/conversation/{MSISDN}")[1]["items"]
    assert wait_until(lambda: [i["kind"] for i in items()] == ["mo", "mt"] and items()[1]["receipts"] and
                      items()[1]["receipts"][0]["state"] == "delivered", 5), items()
    mo_item, mt_item = items()
    assert mo_item["state"] == "delivered" and mo_item["options"] == {"msg_fmt": 15}
    assert mt_item["inbox"] == "picked up" and mt_item["receipts"][0]["stat"] == "DELIVRD"
    state = call(ismg, "GET", "/web/state")[1]
    assert state["protocol"] == "cmpp" and state["short_codes"] == [CODE] and state["faults"]["throttle_status"] == 8
    status, raw = call(ismg, "POST", "/raw", {"hex": "00"})
    assert status == 400 and "SMPP" in raw["error"]


def test_the_handset_cli_says_no_bot_is_connected_to_the_ismg(ismg):
    res = subprocess.run([sys.executable, "-m", "smsbot.cli", "handset", MSISDN, "--send", "0000", "--control",
                          ismg.control_url], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 3 and len(lines) == 1, res.stderr
    assert f"CMPP port {ismg.port}" in lines[0] and "SMSBOT_SMSC_PROTOCOL=cmpp3" in lines[0]
    assert ismg.stats().get("mo_injected", 0) == 0  # nothing sent
