"""`smsbot.outgoing.Outgoing`, a link's write side, on an in-memory socket: one `sendall` per flush,
resps in the link's terms, what a read owes the peer, keepalives and the goodbye, and the
confirmation of guarded resps — a guard comes back only once the question written behind it is
answered, never from a link that died first. CMPP's side: tests/unit/test_cmpp_link.py."""

from __future__ import annotations

import pytest

from smsbot import pdu
from smsbot.messages import CommandId, Status
from smsbot.outgoing import Outgoing, for_link
from smsbot.session import LinkDown, ReplyTo, SequenceGenerator
from tests.helpers import FakeSocket, header, kinds_of, make_link

pytestmark = pytest.mark.unit
T0 = 1000.0


@pytest.fixture
def smsc(unit_settings):
    return unit_settings(**{"smsc.response_timeout": 10, "smsc.enquire_link_interval": 30}).smsc


def write_side(start: int = 0) -> tuple[Outgoing, FakeSocket, ReplyTo]:
    """A bound SMPP link's write side (as the transport makes it), and a `ReplyTo` of its link."""
    sock = FakeSocket()
    link = make_link(sock, now=T0)
    out = for_link(link, SequenceGenerator(start))
    assert type(out) is Outgoing
    return out, sock, ReplyTo(link, 0)


def resp(reply: ReplyTo, seq: int, data_sm: bool = False) -> ReplyTo:
    return ReplyTo(reply.link, seq, data_sm)


def questions(frames) -> list[int]:
    return [seq for cid, _s, seq, _b in frames if cid == CommandId.ENQUIRE_LINK]


def test_resps_go_as_deliver_sm_resp_or_data_sm_resp_in_one_write():
    out, sock, r = write_side()
    out.answer(resp(r, 11), Status.ROK)
    out.answer(resp(r, 12, data_sm=True), Status.RX_T_APPN)
    out.flush(T0)
    out.flush(T0)  # nothing queued: no write
    assert len(sock.sends) == 1
    assert [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.DELIVER_SM_RESP, Status.ROK, 11), (CommandId.DATA_SM_RESP, Status.RX_T_APPN, 12)]


def test_what_a_read_owes_submits_keepalive_and_goodbye_share_the_write():
    out, sock, r = write_side(start=100)
    owed = [pdu.encode_header(CommandId.ENQUIRE_LINK_RESP, 0, 41), pdu.encode_header(CommandId.GENERIC_NACK, Status.RINVCMDID, 42)]
    out.owe(owed, [(resp(r, 4), Status.RX_P_APPN), (resp(r, 5, data_sm=True), Status.ROK)])
    out.submit([pdu.encode_header(CommandId.SUBMIT_SM, 0, 7)])
    out.keepalive()
    out.goodbye()
    out.flush(T0)
    assert len(sock.sends) == 1 and not out.asking  # no guard: nothing to confirm
    assert [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.ENQUIRE_LINK_RESP, 0, 41), (CommandId.GENERIC_NACK, Status.RINVCMDID, 42),
        (CommandId.DELIVER_SM_RESP, Status.RX_P_APPN, 4), (CommandId.DATA_SM_RESP, Status.ROK, 5),
        (CommandId.SUBMIT_SM, 0, 7), (CommandId.ENQUIRE_LINK, 0, 101), (CommandId.UNBIND, 0, 102)]


def test_a_guard_is_confirmed_only_by_the_answer_to_the_question_behind_its_write():
    out, sock, r = write_side(start=20)
    out.answer(resp(r, 5), Status.ROK, "guard-5")
    out.answer(resp(r, 6, data_sm=True), Status.RX_T_APPN)  # a "try again" carries no guard
    out.flush(T0)
    written = sock.written()
    assert kinds_of(written) == ["DELIVER_SM_RESP", "DATA_SM_RESP", "ENQUIRE_LINK"]
    [question] = questions(written)
    assert question == 21 and out.asking  # from the bot's sequence numbers, shared by its links
    assert out.answered([]) == [] and out.answered([question + 1, 7]) == []  # other answers: nothing
    assert out.answered([question]) == ["guard-5"] and not out.asking
    assert out.answered([question]) == []  # the same answer twice confirms once
    out.flush(T0 + 1)
    assert sock.written() == []  # every guard covered: the link stays quiet


def test_guards_are_handed_back_as_they_were_given():
    out, sock, r = write_side()
    guards = [("shard", 3, b"fp"), {"key": "g"}, 7]
    for seq, guard in enumerate(guards, 1):
        out.answer(resp(r, seq), Status.ROK, guard)
    out.flush(T0)
    [question] = questions(sock.written())
    assert out.answered([question]) == guards


def test_several_writes_several_questions_answers_out_of_order():
    """One question at a time: guards written while it is open wait for the next one, asked at the
    next flush (on an idle link too). An answer covers everything written before its question."""
    out, sock, r = write_side(start=10)
    out.answer(resp(r, 1), Status.ROK, "g1")
    out.flush(T0)  # write 1: resp 1 and question 11
    out.answer(resp(r, 2), Status.ROK, "g2")
    out.flush(T0)  # write 2: no second question while 11 is open
    out.keepalive()  # 12: the read side found the link idle; not a confirmation
    out.answer(resp(r, 3), Status.ROK, "g3")
    out.flush(T0)
    assert questions(sock.written()) == [11, 12]
    assert out.answered([12]) == []  # the keepalive's answer
    assert out.answered([12, 11]) == ["g1"]  # in one read, the question's answer behind another
    out.flush(T0 + 1)  # nothing queued, g2 and g3 uncovered: ask again
    [again] = questions(sock.written())
    out.answer(resp(r, 4), Status.ROK, "g4")
    out.flush(T0 + 1)  # written behind the open question: the next one covers it
    assert out.answered([11, again]) == ["g2", "g3"]  # a stale answer first, then the one asked
    out.flush(T0 + 2)
    [last] = questions(sock.written())
    assert last > again and out.answered([last]) == ["g4"]


def test_a_link_that_dies_before_the_answer_confirms_nothing(smsc):
    out, sock, r = write_side()
    out.answer(resp(r, 1), Status.ROK, "g1")
    out.flush(T0)
    [question] = questions(sock.written())
    assert out.next_deadline(smsc) == T0 + smsc.response_timeout
    out.check(T0 + smsc.response_timeout, smsc)  # exactly the timeout: still alive
    with pytest.raises(LinkDown, match="enquire_link unanswered"):
        out.check(T0 + smsc.response_timeout + 0.1, smsc)
    # bound again: the new link's write side (same sequence numbers) never knew that question
    new = Outgoing(FakeSocket(), out.sequences)  # type: ignore[arg-type]
    assert new.answered([question]) == [] and new.next_deadline(smsc) is None


def test_a_failed_write_is_link_down():
    out, sock, r = write_side()
    out.answer(resp(r, 1), Status.ROK, "g1")
    sock.send_error = BrokenPipeError(32, "Broken pipe")
    with pytest.raises(LinkDown, match="send failed"):
        out.flush(T0)
    assert sock.sends == [] and out.out == []


def test_the_socket_gets_one_sendall_per_flush_however_much_is_queued():
    out, sock, r = write_side()
    for seq in range(1, 201):
        out.answer(resp(r, seq), Status.ROK, f"g{seq}")
    out.submit([pdu.encode_header(CommandId.SUBMIT_SM, 0, 1000 + i) for i in range(50)])
    out.flush(T0)
    frames = sock.written()
    assert len(sock.sends) == 1 and len(frames) == 200 + 50 + 1 and frames[-1][0] == CommandId.ENQUIRE_LINK
    assert out.answered([frames[-1][2]]) == [f"g{seq}" for seq in range(1, 201)]


def test_the_answer_the_read_side_returns_reaches_the_write_side():
    """Read side and write side of one link, joined as the transport joins them."""
    out, sock, r = write_side(start=60)
    link = r.link
    out.answer(resp(r, 1), Status.ROK, "g1")
    out.flush(T0)
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 61))
    got = link.read(T0 + 1)
    assert got.answered == [61] and out.answered(got.answered) == ["g1"]
