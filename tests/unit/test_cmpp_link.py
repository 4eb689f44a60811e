"""`smsbot.cmpp_session.CmppLink`, its write side `smsbot.outgoing.CmppOutgoing` on an in-memory
socket, and `smsbot.submits`' CMPP side: what a CMPP read returns, how resps, keepalives and the
goodbye are written, ACTIVE_TEST confirming resps, the fee mapping — no sockets, no Redis."""

from __future__ import annotations

import json

import pytest

from smsbot import cmpp
from smsbot.cmpp import msgid
from smsbot.cmpp.constants import Result
from smsbot.cmpp_session import CmppLink, _Framer
from smsbot.messages import Status
from smsbot.outgoing import CmppOutgoing, for_link
from smsbot.session import LinkDown, Received, ReplyTo, SequenceGenerator
from smsbot.submits import CmppSubmits, fee_of
from tests.helpers import FakeSocket, make_live

pytestmark = pytest.mark.unit
T0 = 1000.0
SERVICES = {code: {"service_id": f"M{code}"} for code in ("VIDEO", "MUSIC", "NEWS", "GAME", "READ", "WEATHER", "RING")}


def cmpp_link(version: int = 0x30, sequences: SequenceGenerator | None = None) -> tuple[CmppLink, CmppOutgoing, FakeSocket]:
    """A CMPP connection's read side and write side (as the transport makes it: `outgoing.for_link`)."""
    sock = FakeSocket()
    link = CmppLink(sock, True, True, "ismg:7890/901234", _Framer(4096), last_pdu=T0, version=version)  # type: ignore[arg-type]
    out = for_link(link, sequences or SequenceGenerator())
    assert isinstance(out, CmppOutgoing) and out.version == version
    return link, out, sock


def take(out: CmppOutgoing, got: Received) -> list:
    """What the transport does with a read for the write side: the answers owed, the guards confirmed."""
    out.owe(got.owed, got.refused)
    return out.answered(got.answered)


def written(sock: FakeSocket, version: int) -> list[cmpp.Pdu]:
    framer = cmpp.Framer()
    frames = framer.feed(b"".join(sock.sends))
    sock.sends.clear()
    return [cmpp.decode(f.command_id, f.body, version) for f in frames]


@pytest.mark.parametrize("version", [0x30, 0x20])
def test_an_mo_comes_up_with_its_msg_id_and_is_answered_with_deliver_resp(version):
    link, out, sock = cmpp_link(version)
    mo = cmpp.Deliver(msg_id=0xABCDEF, dest_id="10086", src_terminal_id="13800138000", msg_content="查询".encode("gbk"),
                      msg_fmt=15)
    sock.feed(cmpp.encode(mo, 7, version))
    got = link.read(T0)
    [(inbound, reply)] = got.mos
    assert (inbound.msisdn, inbound.short_code, inbound.text, inbound.sequence) == ("13800138000", "10086", "查询", 7)
    assert inbound.data_coding == 8 and inbound.payload == "查询".encode("utf-16-be")  # long MOs join as SMPP's do
    assert (reply.sequence, reply.detail) == (7, 0xABCDEF)
    assert inbound.user_message_reference == 0xABCDEF  # a redelivery carries the same Msg_Id: the guard's reference
    out.answer(reply, Status.ROK)
    out.answer(ReplyTo(link, 8, 0x1), Status.RX_T_APPN)
    out.answer(ReplyTo(link, 9, 0x2), Status.RX_P_APPN)
    out.flush(T0)
    assert written(sock, version) == [cmpp.DeliverResp(0xABCDEF, Result.OK), cmpp.DeliverResp(1, Result.FLOW_CONTROL),
                                      cmpp.DeliverResp(2, Result.BAD_STRUCTURE)]


def test_a_status_report_is_a_receipt_named_by_the_submit_resp_msg_id():
    link, _out, sock = cmpp_link()
    report = cmpp.StatusReport(0x1234, "UNDELIV", "2503140931", "2503140932", "8613800138000", 5)
    sock.feed(cmpp.encode(cmpp.Deliver(msg_id=99, dest_id="10086", src_terminal_id="8613800138000", report=report), 3, 0x30))
    [(receipt, reply)] = link.read(T0).receipts
    assert (receipt.message_id, receipt.state, reply.detail) == (msgid.text(0x1234), "UNDELIV", 99)


def test_submit_resps_go_to_the_sender_in_its_terms():
    link, _out, sock = cmpp_link()
    sock.feed(cmpp.encode(cmpp.SubmitResp(0x77, Result.OK), 1, 0x30) + cmpp.encode(cmpp.SubmitResp(0, Result.FLOW_CONTROL), 2, 0x30)
              + cmpp.encode(cmpp.SubmitResp(0, Result.BAD_FEE_CODE), 3, 0x30))
    got = link.read(T0)
    assert got.submit_resps[0] == (1, Status.ROK, msgid.text(0x77))
    assert got.submit_resps[1] == (2, Status.RTHROTTLED, "")  # retried after a pause
    assert got.submit_resps[2][1] not in (Status.ROK, Status.RTHROTTLED, Status.RMSGQFUL, Status.RSYSERR)  # refused for good


def test_active_test_both_ways_and_a_guard_confirmed_by_ours():
    link, out, sock = cmpp_link(sequences=SequenceGenerator(40))
    sock.feed(cmpp.encode(cmpp.ActiveTest(), 5, 0x30))
    assert take(out, link.read(T0)) == []
    out.answer(ReplyTo(link, 6, 0x9), Status.ROK, "guard-6")
    out.flush(T0)
    assert written(sock, 0x30) == [cmpp.ActiveTestResp(), cmpp.DeliverResp(9, 0), cmpp.ActiveTest()]  # ours behind the guarded resp
    assert out.asking
    sock.feed(cmpp.encode(cmpp.ActiveTestResp(), 41, 0x30))
    got = link.read(T0 + 1)
    assert got.answered == [41] and take(out, got) == ["guard-6"] and not out.asking


def test_active_test_confirms_several_writes_and_ignores_answers_to_other_questions(unit_settings):
    """Guards written while a question is open are asked about by the next one; an ACTIVE_TEST_RESP
    to another question (the idle keepalive's) confirms nothing; a link dead before the answer
    confirms nothing."""
    smsc = unit_settings(**{"smsc.response_timeout": 10, "smsc.protocol": "cmpp3", "smsc.cmpp": {"services": SERVICES}}).smsc
    link, out, sock = cmpp_link(sequences=SequenceGenerator(50))
    out.answer(ReplyTo(link, 1, 0x1), Status.ROK, ("g", 1))  # guards are opaque: any value comes back as given
    out.flush(T0)  # question 51
    out.answer(ReplyTo(link, 2, 0x2), Status.ROK, ("g", 2))
    out.keepalive()  # 52: the read side found the link idle
    out.flush(T0 + 1)
    assert written(sock, 0x30) == [cmpp.DeliverResp(1, 0), cmpp.ActiveTest(), cmpp.DeliverResp(2, 0), cmpp.ActiveTest()]
    sock.feed(cmpp.encode(cmpp.ActiveTestResp(), 52, 0x30) + cmpp.encode(cmpp.ActiveTestResp(), 51, 0x30))
    assert take(out, link.read(T0 + 2)) == [("g", 1)]
    out.flush(T0 + 2)  # guard 2 uncovered, no question open: asked again
    assert written(sock, 0x30) == [cmpp.ActiveTest()]
    with pytest.raises(LinkDown, match="CMPP_ACTIVE_TEST unanswered"):
        out.check(T0 + 12.1, smsc)  # question 53 unanswered: the link dies, guard 2 is never confirmed


def test_the_gateways_terminate_is_answered_and_the_link_is_down():
    link, out, sock = cmpp_link()
    sock.feed(cmpp.encode(cmpp.SubmitResp(1, 0), 4, 0x30) + cmpp.encode(cmpp.Terminate(), 5, 0x30))
    got = link.read(T0)
    assert got.down == "gateway sent CMPP_TERMINATE" and len(got.submit_resps) == 1
    take(out, got)
    out.flush(T0)
    assert written(sock, 0x30) == [cmpp.TerminateResp()]


def test_an_unreadable_deliver_is_refused_for_good_with_its_msg_id():
    link, out, sock = cmpp_link()
    sock.feed(cmpp.encode_header(cmpp.CommandId.DELIVER, 8, (0x55).to_bytes(8, "big") + b"\x00" * 5))
    got = link.read(T0)
    assert got.mos == []
    take(out, got)
    out.flush(T0)
    assert written(sock, 0x30) == [cmpp.DeliverResp(0x55, Result.BAD_STRUCTURE)]


def test_goodbye_is_terminate_and_waits_for_its_resp():
    link, out, sock = cmpp_link()
    out.goodbye()
    out.flush(T0)
    assert written(sock, 0x30) == [cmpp.Terminate()]
    sock.feed(cmpp.encode(cmpp.Deliver(msg_id=3, dest_id="10086", src_terminal_id="1", msg_content=b"x"), 9, 0x30)
              + cmpp.encode(cmpp.ActiveTest(), 10, 0x30))
    got = link.goodbye_read()
    assert got.down is None
    take(out, got)
    sock.feed(cmpp.encode(cmpp.TerminateResp(), 1, 0x30))
    assert link.goodbye_read().down
    out.flush(T0)
    # the gateway delivers it again later; its ACTIVE_TEST is answered
    assert written(sock, 0x30) == [cmpp.ActiveTestResp(), cmpp.DeliverResp(3, Result.FLOW_CONTROL)]


# -- the fee mapping ----------------------------------------------------------------------------------------------
@pytest.fixture
def cmpp_settings(unit_settings):
    return unit_settings(**{"smsc.protocol": "cmpp3", "smsc.cmpp": {"services": {**SERVICES, "MUSIC": {
        "service_id": "MMUSIC", "fee": "free"}}}})


def test_the_fee_comes_from_the_catalogue(cmpp_settings):
    assert fee_of(cmpp_settings, "orders.reminder", json.dumps({"code": "VIDEO"})) == (cmpp.Fee.monthly(1500), "MVIDEO")
    assert fee_of(cmpp_settings, "orders.reminder", json.dumps({"code": "RING"})) == (cmpp.Fee.per_message(200), "MRING")
    assert fee_of(cmpp_settings, "orders.reminder", json.dumps({"code": "MUSIC"})) == (cmpp.FREE, "MMUSIC")  # configured free
    assert fee_of(cmpp_settings, "subscriptions.menu", "{}") == (cmpp.FREE, "HELP")
    assert fee_of(cmpp_settings, "orders.reminder", json.dumps({"code": "GONE"})) == (cmpp.FREE, "HELP")


def test_a_long_charged_reply_is_charged_on_its_first_part_only(cmpp_settings):
    submits = CmppSubmits(make_live(cmpp_settings))
    bodies = submits.parts("13800138000", "10086", "扣费提醒" * 40, {"tpl": "orders.reminder", "data": '{"code": "VIDEO"}'})
    parts = [cmpp.decode(cmpp.CommandId.SUBMIT, b, 0x30) for b in bodies]
    assert [(p.pk_total, p.pk_number, p.tp_udhi) for p in parts] == [(len(parts), i, 1) for i in range(1, len(parts) + 1)]
    assert [p.fee.fee_type for p in parts] == ["03"] + ["01"] * (len(parts) - 1)
    assert {(p.src_id, p.msg_src, p.service_id, p.dest_terminal_ids[0]) for p in parts} == {
        ("10086", "901234", "MVIDEO", "8613800138000")}


def test_an_idle_link_sends_active_test_and_dies_when_it_is_not_answered(unit_settings):
    smsc = unit_settings(**{"smsc.response_timeout": 10, "smsc.enquire_link_interval": 30, "smsc.protocol": "cmpp3",
                            "smsc.cmpp": {"services": SERVICES}}).smsc
    link, out, sock = cmpp_link(sequences=SequenceGenerator(70))
    assert not link.check(T0 + 30, smsc)
    assert link.check(T0 + 30.5, smsc)
    out.keepalive()
    out.flush(T0 + 30.5)
    assert written(sock, 0x30) == [cmpp.ActiveTest()]
    with pytest.raises(LinkDown, match="CMPP_ACTIVE_TEST unanswered"):
        link.check(T0 + 40.6, smsc)
    assert smsc.submit_window == 16  # CMPP's window of unanswered SUBMITs, not smsc.window


@pytest.mark.parametrize("protocol", ["cmpp3", "cmpp2"])
def test_a_text_sent_again_is_encoded_once_and_each_reply_is_the_codecs_submit(unit_settings, protocol, monkeypatch):
    """The parts of a text are encoded once; each reply fills in its Dest_terminal_Id and a fresh UDH
    reference, and is octet for octet what the codec writes for that reply."""
    from smsbot.cmpp import text as cmpp_text

    settings = unit_settings(**{"smsc.protocol": protocol, "smsc.cmpp": {"services": SERVICES}})
    version = 0x30 if protocol == "cmpp3" else 0x20
    cuts = []
    split = cmpp_text.split_text
    monkeypatch.setattr(cmpp_text, "split_text", lambda t, *a, **kw: cuts.append(t) or split(t, *a, **kw))
    submits = CmppSubmits(make_live(settings))
    menu = "您订购了：视频会员、音乐包、新闻早晚报。回复序号退订。" * 3
    reminder = {"tpl": "orders.reminder", "data": '{"code": "VIDEO"}'}
    for to, text, fields in [("13800138000", menu, {}), ("13800138001", menu, {}), ("13800138002", "0000 menu", {}),
                             ("13800138003", "0000 menu", {}), ("13800138004", menu, reminder)]:
        bodies = submits.parts(to, "10086", text, fields)
        got = [cmpp.decode(cmpp.CommandId.SUBMIT, b, version) for b in bodies]
        ref = got[0].msg_content[3] if got[0].tp_udhi else None
        parts = split(text, ref=ref)
        fee = cmpp.Fee.monthly(1500) if fields else cmpp.FREE
        want = [cmpp.encode_body(cmpp.Submit(
            dest_terminal_ids=["86" + to], msg_content=c, msg_fmt=parts.msg_fmt, src_id="10086", msg_src="901234",
            service_id="MVIDEO" if fields else "HELP", fee=fee if i == 1 else cmpp.FREE,
            registered_delivery=settings.smsc.registered_delivery,
            pk_total=len(parts.contents), pk_number=i, tp_udhi=parts.tp_udhi), version)
            for i, c in enumerate(parts.contents, 1)]
        assert bodies == want
    assert cuts == [menu, "0000 menu", menu]  # once per text (and fee), not once per reply
    one, two = (submits.parts(to, "10086", menu, {}) for to in ("13800138000", "13800138000"))
    assert len(one) == len(two) > 1 and one != two  # the same reply to the same handset: a fresh UDH reference
