"""The seams of the one-way path (issue 20): each stage returns what it produced and the transport
hands it on; no stage calls back into the one before it.

* a link returns what it read (`Received`) and the guards the SMSC confirmed;
* the pipeline returns resps (`ReplyTo`, status, guard) and never touches a link;
* the outbox renders with the configuration's `Replies`, never back through the router;
* the transport hands a read on, then lets a dead link be dead.
"""

from __future__ import annotations

import threading

import pytest

from smsbot.messages import CommandId, Status
from smsbot.router import Router
from smsbot.session import LinkDown, Received, ReplyTo, SequenceGenerator
from smsbot.transport import Transport
from tests.helpers import (FakeSocket, deliver_sm, entry, header, inbound, kinds_of, make_link, receipt_pdu,
                           submit_sm_resp)

pytestmark = pytest.mark.unit
T0 = 1000.0


class Untouchable:
    """A link the pipeline must never use: any attribute but its name fails the test."""

    name = "smsc:2775/smsbot"

    def __getattr__(self, attr: str):
        raise AssertionError(f"the pipeline reached into the link: .{attr}")


# -- the link ---------------------------------------------------------------------------------------------
def test_a_read_returns_mos_and_receipts_with_the_handle_their_resp_goes_back_through():
    sock = FakeSocket()
    link = make_link(sock, now=T0)
    sock.feed(deliver_sm(3, "0000") + receipt_pdu(4, "abc") + submit_sm_resp(9, 0, "m9"))
    got = link.read(T0)
    [(mo, reply)] = got.mos
    [(receipt, rreply)] = got.receipts
    assert (mo.text, reply.link, reply.sequence, reply.detail) == ("0000", link, 3, False)
    assert (receipt.message_id, rreply.sequence, rreply.bind) == ("abc", 4, link.name)
    assert got.submit_resps == [(9, 0, "m9")] and got.down is None
    assert link.out == []  # nothing answered until the layers above say how


def test_a_guarded_resp_is_confirmed_by_the_enquire_link_behind_its_write():
    sock = FakeSocket()
    link = make_link(sock, now=T0, sequences=SequenceGenerator(20))
    link.answer(ReplyTo(link, 5), Status.ROK, "guard-5")
    link.answer(ReplyTo(link, 6, True), Status.RX_T_APPN)  # a "try again" carries no guard
    link.flush(T0)
    written = sock.written()
    assert kinds_of(written) == ["DELIVER_SM_RESP", "DATA_SM_RESP", "ENQUIRE_LINK"]
    question = written[-1][2]
    assert question == 21  # from the bot's sequence numbers, shared by its links
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, question))
    assert link.read(T0 + 1).confirmed == ["guard-5"]
    link.flush(T0 + 1)
    assert sock.written() == []  # every guard covered: the link stays quiet


def test_a_guard_written_while_a_question_is_open_is_asked_about_again_on_an_idle_link():
    sock = FakeSocket()
    link = make_link(sock, now=T0)
    link.answer(ReplyTo(link, 1), Status.ROK, "g1")
    link.flush(T0)
    [(_c, _s, q1, _b)] = [f for f in sock.written() if f[0] == CommandId.ENQUIRE_LINK]
    link.answer(ReplyTo(link, 2), Status.ROK, "g2")
    link.flush(T0)  # write 2: the first question is still open, no second one
    assert kinds_of(sock.written()) == ["DELIVER_SM_RESP"]
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, q1))
    assert link.read(T0 + 1).confirmed == ["g1"]
    link.flush(T0 + 1)  # nothing queued, g2 not covered: ask again
    [(c, _s, q2, _b)] = sock.written()
    assert c == CommandId.ENQUIRE_LINK
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, q2))
    assert link.read(T0 + 2).confirmed == ["g2"]


def test_what_came_before_an_unbind_is_returned_with_the_link_down():
    sock = FakeSocket()
    link = make_link(sock, now=T0)
    sock.feed(submit_sm_resp(4, 0, "m4") + header(CommandId.UNBIND, 5) + deliver_sm(6))
    got = link.read(T0)
    assert got.submit_resps == [(4, 0, "m4")] and got.down == "SMSC sent unbind" and got.mos == []


# -- the pipeline -------------------------------------------------------------------------------------------
def test_the_pipeline_returns_resps_and_never_touches_a_link(hot_path):
    hp = hot_path()
    hp.settle_records()
    link = Untouchable()
    mo_reply, receipt_reply = ReplyTo(link, 7), ReplyTo(link, 8, True)
    hp.pipeline.on_mo(inbound(7), mo_reply)
    hp.sock.feed(receipt_pdu(1, "r1"))
    [(receipt, _r)] = hp.link.read(hp.clock()).receipts
    hp.pipeline.on_receipt(receipt, receipt_reply)
    assert hp.pipeline.start_batches() == []
    rt = hp.store.roundtrips[-1]
    rt.arrive()
    answered, resps = hp.pipeline.poll([rt])
    [guard] = [str(c.argv.batch) for c in hp.store.mo_calls(rt)]  # a resp's guard: its batch's number
    assert answered and resps == [(receipt_reply, Status.ROK, None), (mo_reply, Status.ROK, guard)]
    assert hp.sender.backlog == 1  # the reply went on to the outbox


def test_a_failed_round_trip_returns_try_again_without_a_guard(hot_path):
    hp = hot_path()
    hp.store.lose = 1
    reply = ReplyTo(Untouchable(), 3)
    hp.pipeline.on_mo(inbound(3), reply)
    hp.pipeline.start_batches()
    hp.store.roundtrips[-1].arrive()
    assert hp.pipeline.poll(hp.store.roundtrips[-1:]) == (True, [(reply, Status.RX_T_APPN, None)])


def test_refused_and_completed_at_stop_are_returned(hot_path):
    hp = hot_path()
    a, b = ReplyTo(Untouchable(), 1), ReplyTo(Untouchable(), 2)
    hp.pipeline.on_mo(inbound(1), a)
    hp.pipeline.start_batches()
    hp.pipeline.on_mo(inbound(2), b)  # the same subscriber: waits for the first
    assert hp.pipeline.refuse_deferred() == [(b, Status.RX_T_APPN, None)]
    [(reply, status, guard)] = hp.pipeline.complete_all()
    assert reply is a and status == Status.ROK and guard


# -- the outbox's renderer ------------------------------------------------------------------------------------
def test_the_outbox_renders_without_asking_the_router(hot_path, monkeypatch):
    hp = hot_path()

    def asked(*_a, **_k):
        raise AssertionError("the outbox went back to the router")

    monkeypatch.setattr(Router, "render", asked)
    monkeypatch.setattr(Router, "route", asked)
    hp.sender.enqueue([entry(0, "hello")])
    [part] = hp.sender.take()
    assert b"hello" in part


def test_replies_render_as_the_router_did_for_the_api(hot_path):
    hp = hot_path()
    replies = hp.live.replies
    assert replies is hp.live.router.replies  # one configuration: routing and rendering together
    assert replies.render_text("help", "{}", "zh-CN", "10086") == hp.live.router.render("help", {}, "zh-CN", "10086")
    assert replies.render_text("help", "{}", "zh-CN", "10086") is replies.render_text("help", "{}", "zh-CN", "10086")


# -- the transport ----------------------------------------------------------------------------------------------
def test_the_transport_hands_a_read_on_then_takes_the_link_down(hot_path):
    hp = hot_path()
    transport = Transport(hp.live, hp.pipeline, None, hp.sender, hp.sequences, threading.Event())  # type: ignore[arg-type]
    hp.mo(3)
    hp.start_batches()
    hp.answer()  # batch 1: its resp's guard awaits the SMSC's confirmation
    [part] = hp.sender.take()  # its reply
    seq = int.from_bytes(part[12:16], "big")
    reply = ReplyTo(hp.link, 4)
    got = Received(mos=[(inbound(4), reply)], submit_resps=[(seq, 0, "m")], confirmed=["1"], down="SMSC sent unbind")
    with pytest.raises(LinkDown, match="SMSC sent unbind"):
        transport._take(got)
    assert [r for _mo, r in hp.pipeline.deferred] == [reply] and hp.pipeline.clears_waiting
    assert hp.sender.inflight == 0  # the submit_sm_resp counted before the link went


def test_the_transport_writes_each_resp_on_its_own_link(hot_path):
    hp = hot_path()
    other_sock = FakeSocket()
    other = make_link(other_sock, now=T0, name="smsc:2775/smsbot rx")
    Transport._answer([(ReplyTo(hp.link, 1), Status.ROK, "g"), (ReplyTo(other, 2, True), Status.RX_T_APPN, None)])
    hp.link.flush(T0)
    other.flush(T0)
    assert kinds_of(hp.sock.written()) == ["DELIVER_SM_RESP", "ENQUIRE_LINK"]
    assert [(c, s, q) for c, s, q, _b in other_sock.written()] == [(CommandId.DATA_SM_RESP, Status.RX_T_APPN, 2)]
