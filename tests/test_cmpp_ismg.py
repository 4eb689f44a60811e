"""The simulated ISMG over real TCP on 127.0.0.1, with the tests' CMPP SP (tests/cmpp_sp.py)."""

from __future__ import annotations

import socket
import struct
from datetime import datetime

import pytest

from smsbot import cmpp
from smsbot.cmpp import auth, text
from smsbot.cmpp.msgid import MsgId
from smsbot.config import SimulatorSettings, SmscSettings
from smsbot.simulator import Handset, SimSmsc
from smsbot.simulator.ismg import SimIsmg

from .cmpp_sp import SECRET, SP_ID, Refused, Sp

MSISDN = "13800138000"
CODE = "10086"
NOW = datetime(2025, 3, 14, 9, 31, 7)
MENU = ("尊敬的客户，您已订购的包月业务如下：\n1. 视频会员包月 15元/月\n2. 彩铃音乐包 5元/月\n3. 手机早晚报 3元/月\n"
        "4. 游戏特权包 10元/月\n5. 阅读会员 5元/月\n请在24小时内直接回复序号退订，多个序号用逗号或空格隔开，如：1，3。【中国移动】")


@pytest.fixture
def ismg():
    sim = SimIsmg(SP_ID, SECRET, response_timeout=2.0, redeliver_seconds=0.1, clock=lambda: NOW).start()
    yield sim
    sim.stop()


@pytest.fixture
def sps():
    opened: list[Sp] = []
    yield opened
    for sp in opened:
        sp.close()


def open_sp(ismg: SimIsmg, sps: list[Sp], **kw) -> Sp:
    sp = Sp.open(ismg.port, **kw)
    sps.append(sp)
    return sp


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(5)
    return sock.recv(100) == b""


# ---------------------------------------------------------------------------------------------- CONNECT


@pytest.mark.parametrize("version", [0x30, 0x20])
def test_connect_authenticates_both_ways(ismg, sps, version):
    sp = open_sp(ismg, sps, version=version)  # Sp.open checks AuthenticatorISMG
    assert sp.version == version
    assert ismg.connections()[0]["version"] == version
    connect_resp = sp.wire[1].data
    assert len(connect_resp) == 12 + (21 if version == 0x30 else 18)


@pytest.mark.parametrize("kw, status", [
    ({"secret": "wrong"}, cmpp.ConnectStatus.AUTH_FAILED),
    ({"sp_id": "901235"}, cmpp.ConnectStatus.BAD_SOURCE_ADDR),
    ({"version": 0x31}, cmpp.ConnectStatus.VERSION_TOO_HIGH),
])
def test_a_bad_connect_is_refused_with_its_status_and_closed(ismg, kw, status):
    with pytest.raises(Refused) as e:
        Sp.open(ismg.port, **kw)
    assert e.value.resp.status == status and e.value.resp.authenticator == auth.EMPTY
    assert ismg.stats()["connect_failures"] == 1 and not ismg.connections()


def test_a_20_gateway_refuses_30_in_20_layout():
    with SimIsmg(SP_ID, SECRET, version=0x20) as gw:
        with pytest.raises(Refused) as e:
            Sp.open(gw.port, version=0x30)
        assert e.value.resp == cmpp.ConnectResp(cmpp.ConnectStatus.VERSION_TOO_HIGH, auth.EMPTY, 0x20)
        sp = Sp.open(gw.port, version=0x20)
        sp.close()


def test_the_authenticator_depends_on_the_timestamp_sent(ismg):
    ts = auth.timestamp(NOW)
    stale = auth.authenticator_source(SP_ID, SECRET, ts - 1)
    sock = socket.create_connection(("127.0.0.1", ismg.port), timeout=5)
    sock.sendall(cmpp.encode(cmpp.Connect(SP_ID, stale, 0x30, ts), 1, 0x30))
    (frame,) = cmpp.Framer().feed(sock.recv(100))
    assert cmpp.decode(frame.command_id, frame.body, 0x30).status == cmpp.ConnectStatus.AUTH_FAILED
    assert closed_by_peer(sock)


def test_an_unreadable_connect_gets_status_1(ismg):
    sock = socket.create_connection(("127.0.0.1", ismg.port), timeout=5)
    sock.sendall(cmpp.encode_header(cmpp.CommandId.CONNECT, 7, b"901234"))
    (frame,) = cmpp.Framer().feed(sock.recv(100))
    assert frame.sequence == 7
    assert cmpp.decode(frame.command_id, frame.body, 0x30) == cmpp.ConnectResp(1, auth.EMPTY, 0x30)
    assert closed_by_peer(sock)


def test_anything_before_connect_closes_the_connection(ismg):
    sock = socket.create_connection(("127.0.0.1", ismg.port), timeout=5)
    sock.sendall(cmpp.encode(cmpp.ActiveTest(), 1, 0x30))
    assert closed_by_peer(sock)


# ---------------------------------------------------------------------------------------------- link


def test_active_test_both_ways_and_terminate(ismg, sps):
    sp = open_sp(ismg, sps)
    assert sp.active_test() == cmpp.ActiveTestResp(0)
    assert len(ismg.active_test()) == 1
    assert sp.wait_for(lambda: sp.active_tests_received == 1)
    assert sp.terminate() == cmpp.TerminateResp()
    assert sp.wait_for(lambda: sp.closed.is_set())  # the gateway closed after its TERMINATE_RESP
    stats = ismg.stats()
    assert stats["active_tests_received"] == 1 and stats["active_tests_sent"] == 1
    assert stats["terminates_received"] == 1


def test_an_idle_link_gets_an_active_test_and_one_unanswered_closes_it(sps):
    with SimIsmg(SP_ID, SECRET, active_test_interval=0.2, response_timeout=2.0) as gw:
        sp = open_sp(gw, sps)
        assert sp.wait_for(lambda: sp.active_tests_received >= 1)
        silent = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        ts = auth.timestamp(NOW)
        silent.sendall(cmpp.encode(cmpp.Connect(SP_ID, auth.authenticator_source(SP_ID, SECRET, ts), 0x30, ts),
                                   1, 0x30))
        framer, seen = cmpp.Framer(), []
        while True:  # read (the CONNECT_RESP, ACTIVE_TESTs) and never answer, until the gateway closes
            data = silent.recv(100)
            if not data:
                break
            seen += [f.command_id for f in framer.feed(data)]
        assert seen[0] == cmpp.CommandId.CONNECT_RESP and cmpp.CommandId.ACTIVE_TEST in seen
        assert gw.stats()["active_tests_unanswered"] == 1
        assert not sp.closed.is_set()  # the one that answers stays


# ---------------------------------------------------------------------------------------------- MO


def test_an_mo_arrives_as_a_deliver(ismg, sps):
    sp = open_sp(ismg, sps)
    mo = ismg.inject_mo(MSISDN, CODE, "0000", service_id="MENU")
    assert ismg.wait_mo(mo["id"])["state"] == "delivered" and sp.wait_for(lambda: len(sp.delivers) == 1)
    ((_seq, d),) = sp.delivers
    assert (d.src_terminal_id, d.dest_id, d.msg_fmt, d.msg_content, d.service_id, d.tp_udhi) == (
        MSISDN, CODE, 0, b"0000", "MENU", 0)
    assert d.report is None and len(d.link_id) == 20
    assert MsgId.unpack(d.msg_id) == MsgId.at(NOW, ismg.gateway_code, MsgId.unpack(d.msg_id).sequence)


@pytest.mark.parametrize("version", [0x30, 0x20])
@pytest.mark.parametrize("msg_fmt", [None, 8, 15])
def test_long_mos_come_in_parts_with_a_udh(ismg, sps, version, msg_fmt):
    sp = open_sp(ismg, sps, version=version)
    message = "退订" + "，我要取消视频会员包月" * 12
    mo = ismg.inject_mo(MSISDN, CODE, message, msg_fmt=msg_fmt)
    assert mo["parts"] >= 2
    assert ismg.wait_mo(mo["id"])["state"] == "delivered" and sp.wait_for(lambda: len(sp.delivers) == mo["parts"])
    delivers = [d for _s, d in sp.delivers]
    assert [d.msg_fmt for d in delivers] == [msg_fmt or 8] * mo["parts"]
    split = [text.split_content(d.tp_udhi, d.msg_content) for d in delivers]
    assert [(s.seq, s.total) for _p, s in split] == [(i, mo["parts"]) for i in range(1, mo["parts"] + 1)]
    assert text.join_parts(delivers[0].msg_fmt, [p for p, _s in split]) == message
    if version == 0x20:
        assert {d.link_id for d in delivers} == {""}
    else:
        assert {len(d.link_id) for d in delivers} == {20} and len({d.link_id for d in delivers}) == mo["parts"]
    assert len({d.msg_id for d in delivers}) == mo["parts"]


def test_an_unanswered_deliver_is_sent_again_with_the_same_msg_id(ismg, sps):
    answers = iter([None, 0])  # the first one goes unanswered
    sp = open_sp(ismg, sps, answer=lambda d: next(answers))
    mo = ismg.inject_mo(MSISDN, CODE, "1")
    status = ismg.wait_mo(mo["id"], timeout=10)
    assert status["state"] == "delivered" and status["redeliveries"] == 1 and status["attempts"] == 2
    assert sp.wait_for(lambda: len(sp.delivers) == 2)
    (s1, first), (s2, again) = sp.delivers
    assert again == first and s2 != s1


@pytest.mark.parametrize("result, state, deliveries", [(8, "delivered", 2), (1, "rejected", 1)])
def test_results_of_deliver_resp(ismg, sps, result, state, deliveries):
    answers = iter([result, 0])
    sp = open_sp(ismg, sps, answer=lambda d: next(answers))
    mo = ismg.inject_mo(MSISDN, CODE, "2")
    assert ismg.wait_mo(mo["id"], timeout=10)["state"] == state
    assert sp.wait_for(lambda: len(sp.delivers) == deliveries)


def test_dropped_connections_and_a_new_connect(ismg, sps):
    first = open_sp(ismg, sps)
    assert ismg.drop_connections() == 1
    assert first.wait_for(lambda: first.closed.is_set()) and not ismg.connections()
    second = open_sp(ismg, sps)
    mo = ismg.inject_mo(MSISDN, CODE, "0000")
    assert ismg.wait_mo(mo["id"])["state"] == "delivered" and second.wait_for(lambda: len(second.delivers) == 1)
    assert not first.delivers


def test_an_mo_waits_for_a_connection(ismg, sps):
    mo = ismg.inject_mo(MSISDN, CODE, "0000")
    assert ismg.mo_status(mo["id"])["state"] in ("queued", "delivering")
    sp = open_sp(ismg, sps)
    assert ismg.wait_mo(mo["id"])["state"] == "delivered" and sp.wait_for(lambda: len(sp.delivers) == 1)


# ---------------------------------------------------------------------------------------------- MT


def menu_submits(message: str, *, registered: int = 1, fee: cmpp.Fee = cmpp.FREE, msg_fmt: int | None = None,
                 dest: str = "8613800138000") -> list[cmpp.Submit]:
    parts = text.split_text(message, msg_fmt, ref=42)
    return [cmpp.Submit([dest], c, parts.msg_fmt, src_id=CODE, msg_src=SP_ID, service_id="MENU", fee=fee,
                        registered_delivery=registered, pk_total=len(parts.contents), pk_number=i,
                        tp_udhi=parts.tp_udhi)
            for i, c in enumerate(parts.contents, 1)]


@pytest.mark.parametrize("version", [0x30, 0x20])
def test_a_long_mt_is_stored_whole_and_each_part_gets_a_status_report(ismg, sps, version):
    sp = open_sp(ismg, sps, version=version)
    submits = menu_submits(MENU, fee=cmpp.Fee.monthly(1500))
    assert len(submits) == 2
    resps = [sp.submit(s) for s in submits]
    assert [r.result for r in resps] == [0, 0] and len({r.msg_id for r in resps}) == 2
    assert all(MsgId.unpack(r.msg_id).gateway == ismg.gateway_code for r in resps)
    (msg,) = ismg.mailbox.take(MSISDN, wait=5)
    assert (msg.text, msg.sender, msg.parts, msg.data_coding) == (MENU, CODE, 2, 8)
    assert msg.message_ids == [cmpp.msgid.text(r.msg_id) for r in resps]
    assert sp.wait_for(lambda: len(sp.delivers) == 2)
    reports = sorted((d.report for _s, d in sp.delivers), key=lambda r: r.msg_id)
    assert [r.msg_id for r in reports] == sorted(r.msg_id for r in resps)
    assert {(r.stat, r.dest_terminal_id, r.submit_time) for r in reports} == {("DELIVRD", "8613800138000", "2503140931")}
    assert {(d.dest_id, d.src_terminal_id) for _s, d in sp.delivers} == {(CODE, "8613800138000")}
    log = ismg.submit_log()
    assert [(e["fee_type"], e["fee_code"], e["service_id"], e["pk_number"]) for e in log] == [
        ("03", "001500", "MENU", 1), ("03", "001500", "MENU", 2)]


def test_reports_say_what_the_handset_did_and_only_when_asked(sps):
    with SimIsmg(SP_ID, SECRET, report_stats={MSISDN: "UNDELIV"}) as gw:
        sp = open_sp(gw, sps)
        sp.submit(menu_submits("hello", registered=0)[0])
        sp.submit(menu_submits("hello again")[0])
        assert sp.wait_for(lambda: len(sp.delivers) == 1)
        assert sp.delivers[0][1].report.stat == "UNDELIV"
        assert len(gw.mailbox.take(MSISDN, wait=5)) == 2
        (report_job,) = gw.jobs("report")  # none for the first
        assert gw.wait_mo(report_job["id"])["state"] == "delivered" and len(sp.delivers) == 1


def test_a_gbk_mt_is_read_with_pythons_codec(ismg, sps):
    sp = open_sp(ismg, sps)
    (s,) = menu_submits("您已成功退订彩铃音乐包。", registered=0, msg_fmt=15)
    assert sp.submit(s).result == 0
    assert ismg.mailbox.take(MSISDN, wait=5)[0].text == "您已成功退订彩铃音乐包。"


def _raw_submit(s: cmpp.Submit, patch: dict[int, bytes]) -> bytes:
    body = bytearray(cmpp.encode_body(s, 0x30))
    for offset, value in patch.items():
        body[offset:offset + len(value)] = value
    return bytes(body)


@pytest.mark.parametrize("patch, result", [
    ({67: b"000100"}, 5),  # FeeCode 1 yuan under FeeType 01 (free)
    ({65: b"09"}, 5),  # no such FeeType
    ({59: b"999999"}, 11),  # Msg_src of another SP
])
def test_a_bad_submit_gets_its_result(ismg, sps, patch, result):
    sp = open_sp(ismg, sps)
    (s,) = menu_submits("hi", registered=1)
    body = _raw_submit(s, patch)
    resp = sp.request(cmpp.Unknown(cmpp.CommandId.SUBMIT, body))
    assert isinstance(resp, cmpp.SubmitResp) and resp == cmpp.SubmitResp(0, result)
    assert ismg.mailbox.pending_count(MSISDN) == 0 and ismg.stats()["submits_rejected"] == 1


def test_an_unreadable_submit_gets_result_1(ismg, sps):
    sp = open_sp(ismg, sps)
    resp = sp.request(cmpp.Unknown(cmpp.CommandId.SUBMIT, bytes(40)))
    assert resp == cmpp.SubmitResp(0, cmpp.Result.BAD_STRUCTURE)
    assert sp.active_test() == cmpp.ActiveTestResp(0)  # the link carries on


def test_the_smpp_simulators_handsets_read_cmpp_mts_from_its_mailbox(sps):
    smsc = SimSmsc(SimulatorSettings(host="127.0.0.1", smpp_port=0, control_port=0), SmscSettings()).start()
    try:
        with SimIsmg(SP_ID, SECRET, mailbox=smsc.mailbox) as gw:
            sp = open_sp(gw, sps)
            for s in menu_submits(MENU, registered=0):
                assert sp.submit(s).result == 0
            (got,) = Handset(smsc.control_url, MSISDN).collect(wait=5)
            assert (got["text"], got["from"], got["parts"]) == (MENU, CODE, 2)
    finally:
        smsc.stop()


def test_msg_id_sequence_and_time_come_from_the_gateway(ismg, sps):
    sp = open_sp(ismg, sps)
    r1, r2 = (sp.submit(s) for s in menu_submits("a", registered=0) + menu_submits("b", registered=0))
    m1, m2 = MsgId.unpack(r1.msg_id), MsgId.unpack(r2.msg_id)
    assert (m1.month, m1.day, m1.hour, m1.minute, m1.second) == (3, 14, 9, 31, 7)
    assert m2.sequence == (m1.sequence + 1) & 0xFFFF
    assert struct.pack(">Q", r1.msg_id)[:1] == bytes([0x37])  # month 3, day 14 in the top bits
