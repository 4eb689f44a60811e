"""How a link learns that the SMSC read a guarded resp, on in-memory sockets (SMPP and CMPP): a
submit written behind the resp in the same write is the question, and any answer to it confirms
the guard (the SMSC answered after reading it, so after reading what came before it); an
enquire_link (CMPP_ACTIVE_TEST) goes only when no submit follows; nothing is confirmed by the
answer to a submit written before the resp; and on the hot path a reply's first submit_sm_resp
lets the guard go."""

from __future__ import annotations

import pytest

from smsbot import cmpp, pdu
from smsbot.cmpp.constants import Result
from smsbot.cmpp_session import CmppLink, _Framer
from smsbot.messages import CommandId, Status, SubmitSm
from smsbot.session import Link, LinkDown, ReplyTo, SequenceGenerator
from tests.helpers import FakeSocket, header, kinds_of, make_link, submit_sm_resp

pytestmark = pytest.mark.unit
T0 = 1000.0


@pytest.fixture
def smsc(unit_settings):
    return unit_settings(**{"smsc.response_timeout": 10, "smsc.enquire_link_interval": 30}).smsc


def submit(seq: int) -> bytes:
    return pdu.encode_submit_sm(SubmitSm(source_addr="10086", destination_addr="13800138000", short_message=b"hi"), seq)


def guarded_resp(link: Link, mo_seq: int) -> str:
    guard = f"guard-{mo_seq}"
    link.answer(ReplyTo(link, mo_seq), Status.ROK, guard)
    return guard


@pytest.mark.parametrize("answer", [
    submit_sm_resp(42, 0, "m42"),
    submit_sm_resp(42, Status.RTHROTTLED),  # an error too: the SMSC read the submit before answering it
    header(CommandId.GENERIC_NACK, 42, Status.RSYSERR),
], ids=["ok", "throttled", "generic_nack"])
def test_a_submit_behind_the_guarded_resps_confirms_them_without_an_enquire_link(answer):
    sock = FakeSocket()
    link = make_link(sock, sequences=SequenceGenerator(100))
    guards = [guarded_resp(link, 1), guarded_resp(link, 2)]
    link.out += [submit(42), submit(43)]  # the transport queues the replies' parts behind the resps
    link.flush(T0)
    assert kinds_of(sock.written()) == ["DELIVER_SM_RESP", "DELIVER_SM_RESP", "SUBMIT_SM", "SUBMIT_SM"]
    assert link.confirming and len(sock.sends) == 1
    sock.feed(answer)
    got = link.read(T0 + 0.001)
    assert got.confirmed == guards and link.confirmed == 1 and not link.confirming
    assert len(got.submit_resps) == 1  # still handed on to the sender
    link.flush(T0 + 0.002)
    assert sock.written() == []  # every guard covered: nothing more to ask


def test_the_answer_to_another_submit_confirms_nothing():
    sock = FakeSocket()
    link = make_link(sock, sequences=SequenceGenerator(100))
    [guard] = [guarded_resp(link, 1)]
    link.out += [submit(42), submit(43)]
    link.flush(T0)
    sock.feed(submit_sm_resp(43, 0, "m43"))  # the second part's answer: the first one's is the question
    assert link.read(T0).confirmed == [] and link.confirming
    sock.feed(submit_sm_resp(42, 0, "m42"))
    assert link.read(T0).confirmed == [guard]


def test_a_submit_written_before_the_resp_confirms_nothing():
    sock = FakeSocket()
    link = make_link(sock, sequences=SequenceGenerator(100))
    link.out.append(submit(42))
    link.flush(T0)  # write 1: a submit, no guard
    guard = guarded_resp(link, 1)
    link.flush(T0)  # write 2: the guarded resp alone
    assert kinds_of(sock.written()) == ["SUBMIT_SM", "DELIVER_SM_RESP", "ENQUIRE_LINK"]
    sock.feed(submit_sm_resp(42, 0, "m42"))
    assert link.read(T0).confirmed == []  # read before the resp was written
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 101))
    assert link.read(T0).confirmed == [guard]


def test_a_submit_ahead_of_the_resp_in_the_same_write_is_not_the_question():
    sock = FakeSocket()
    link = make_link(sock, sequences=SequenceGenerator(100))
    link.out.append(submit(42))
    guard = guarded_resp(link, 1)
    link.flush(T0)
    assert kinds_of(sock.written()) == ["SUBMIT_SM", "DELIVER_SM_RESP", "ENQUIRE_LINK"]
    sock.feed(submit_sm_resp(42, 0, "m42"))
    assert link.read(T0).confirmed == []
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 101))
    assert link.read(T0).confirmed == [guard]


def test_guards_waiting_behind_a_question_are_confirmed_by_a_later_writes_submit():
    """One question at a time: guards written while one is out wait for it, then the next write's
    submit covers them (any submit of a later write comes after them)."""
    sock = FakeSocket()
    link = make_link(sock, sequences=SequenceGenerator(100))
    first = guarded_resp(link, 1)
    link.out.append(submit(42))
    link.flush(T0)  # write 1: asks by submit 42
    second = guarded_resp(link, 2)
    link.out.append(submit(43))
    link.flush(T0)  # write 2: a question is out already
    sock.feed(submit_sm_resp(43, 0, "m43"))
    assert link.read(T0).confirmed == []  # not the question asked
    sock.feed(submit_sm_resp(42, 0, "m42"))
    assert link.read(T0).confirmed == [first]
    link.out.append(submit(44))
    link.flush(T0)  # write 3: no resp in it, its submit covers write 2
    assert kinds_of(sock.written()) == ["DELIVER_SM_RESP", "SUBMIT_SM"] * 2 + ["SUBMIT_SM"]
    sock.feed(submit_sm_resp(44, 0, "m44"))
    assert link.read(T0).confirmed == [second]


def test_an_unanswered_confirming_submit_kills_the_link(smsc):
    sock = FakeSocket()
    link = make_link(sock)
    guarded_resp(link, 1)
    link.out.append(submit(42))
    link.flush(T0)
    assert link.next_deadline(smsc) == T0 + smsc.response_timeout
    link.check(T0 + smsc.response_timeout, smsc)
    with pytest.raises(LinkDown, match="submit_sm unanswered"):
        link.check(T0 + smsc.response_timeout + 0.1, smsc)


def test_a_submit_resp_in_a_read_cut_short_by_a_framing_error_still_confirms():
    sock = FakeSocket()
    link = make_link(sock)
    guard = guarded_resp(link, 1)
    link.out.append(submit(42))
    link.flush(T0)
    sock.feed(submit_sm_resp(42, 0, "m42") + b"\x00\x00\x00\x03" + b"\x00" * 12)
    got = link.read(T0)
    assert got.down and got.confirmed == [guard]


# -- CMPP: SUBMIT and CMPP_ACTIVE_TEST play the same parts -----------------------------------------------
@pytest.mark.parametrize("result", [Result.OK, Result.FLOW_CONTROL])
def test_a_cmpp_submit_behind_the_guarded_resp_confirms_it_without_an_active_test(result):
    sock = FakeSocket()
    link = CmppLink(sock, True, True, "ismg:7890/901234", _Framer(4096), last_pdu=T0,  # type: ignore[arg-type]
                    sequences=SequenceGenerator(100))
    guard = f"guard-{7}"
    link.answer(ReplyTo(link, 7, 0xABC), Status.ROK, guard)
    link.out.append(cmpp.encode_header(cmpp.CommandId.SUBMIT, 55, b"\x00" * 40))
    link.flush(T0)
    written = cmpp.Framer().feed(b"".join(sock.sends))
    assert [f.command_id for f in written] == [cmpp.CommandId.DELIVER_RESP, cmpp.CommandId.SUBMIT]
    sock.feed(cmpp.encode(cmpp.SubmitResp(0x1234, result), 55, link.version))
    got = link.read(T0)
    assert got.confirmed == [guard] and [seq for seq, _s, _m in got.submit_resps] == [55]


def test_a_cmpp_resp_alone_is_confirmed_by_an_active_test():
    sock = FakeSocket()
    link = CmppLink(sock, True, True, "ismg:7890/901234", _Framer(4096), last_pdu=T0,  # type: ignore[arg-type]
                    sequences=SequenceGenerator(100))
    link.answer(ReplyTo(link, 7, 0xABC), Status.ROK, "guard-7")
    link.flush(T0)
    written = cmpp.Framer().feed(b"".join(sock.sends))
    assert [(f.command_id, f.sequence) for f in written] == [(cmpp.CommandId.DELIVER_RESP, 7), (cmpp.CommandId.ACTIVE_TEST, 101)]
    sock.feed(cmpp.encode(cmpp.ActiveTestResp(), 101, link.version))
    assert link.read(T0).confirmed == ["guard-7"]


# -- on the hot path ----------------------------------------------------------------------------------------
def test_a_replys_first_submit_sm_resp_lets_the_guard_go(hot_path):
    """The transport's turn at window 1: the MO's resp and its reply's parts in one write, no
    enquire_link; the first part's submit_sm_resp hands the guard to the pipeline, which deletes it."""
    hp = hot_path()
    hp.mo(1)
    hp.start_batches()
    [guard] = [c.keys.guard for c in hp.store.mo_calls(hp.store.roundtrips[0])]
    hp.answer()
    hp.link.out.extend(hp.sender.take())
    frames = hp.flush()
    assert kinds_of(frames)[0] == "DELIVER_SM_RESP" and "ENQUIRE_LINK" not in kinds_of(frames)
    [first, *_rest] = [seq for cid, _s, seq, _b in frames if cid == CommandId.SUBMIT_SM]
    assert not hp.pipeline.clears_waiting
    hp.smsc_sends(submit_sm_resp(first, 0, "m1"))
    assert hp.pipeline.clears_waiting
    assert hp.pipeline.record()
    assert hp.store.deleted(hp.store.roundtrips[-1]) == [guard]
