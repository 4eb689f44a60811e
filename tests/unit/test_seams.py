"""The seams of the one-way path (issue 20): each stage returns what it produced and the transport
hands it on; no stage calls back into the one before it.

* a link's read side returns what it read (`Received`): MOs, receipts, the answers it owes the
  peer, and which of our questions were answered; it never writes a bound link;
* its write side (`smsbot.outgoing`) turns those answers into the guards the SMSC confirmed;
* the pipeline returns resps (`ReplyTo`, status, guard) and never touches a link;
* the outbox renders with the configuration's `Replies`, never back through the router;
* the transport hands a read on, a resp to the write side of its link, confirmed guards to the
  pipeline, then lets a dead link be dead.
"""

from __future__ import annotations

import threading

import pytest

from smsbot.messages import CommandId, Status
from smsbot.outgoing import Outgoing
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
    assert got.owed == [] and got.refused == [] and sock.sends == []  # nothing answered until the layers above say how


def test_the_read_side_returns_answers_by_sequence_and_the_write_side_knows_their_guards():
    sock = FakeSocket()
    link, out = make_link(sock, now=T0), Outgoing(sock, SequenceGenerator(20))  # type: ignore[arg-type]
    out.answer(ReplyTo(link, 5), Status.ROK, "guard-5")
    out.flush(T0)
    [question] = [seq for cid, _s, seq, _b in sock.written() if cid == CommandId.ENQUIRE_LINK]
    writes = len(sock.sends)
    sock.feed(header(CommandId.ENQUIRE_LINK, 7) + header(CommandId.ENQUIRE_LINK_RESP, question))
    got = link.read(T0 + 1)
    assert got.answered == [question] and len(sock.sends) == writes  # the read side wrote nothing
    assert out.answered(got.answered) == ["guard-5"]
    out.owe(got.owed, got.refused)
    out.flush(T0 + 1)
    assert [(c, q) for c, _s, q, _b in sock.written()] == [(CommandId.ENQUIRE_LINK_RESP, 7)]


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
class Binds:
    """`connect` for the transport (links on `FakeSocket`s: one transceiver, or a receiver and a
    transmitter) and `Delivery`'s part of a bind (alive, a new session, may send); the write sides
    are the transport's own (`outgoing.for_link`)."""

    def __init__(self, hp, kinds: tuple[tuple[bool, bool], ...] = ((True, True),)) -> None:
        self.hp = hp
        self.kinds = kinds
        self.socks: list[FakeSocket] = []

    def alive(self, _now: float) -> None:
        pass

    def new_session(self) -> None:
        self.hp.sessions.new_session()

    def may_send(self, _now: float) -> bool:
        return True

    def connect(self, _s, _sequences) -> list:
        self.socks = [FakeSocket() for _ in self.kinds]
        return [make_link(sock, now=T0, rx=rx, tx=tx) for sock, (rx, tx) in zip(self.socks, self.kinds)]


def bound_transport(hp, kinds: tuple[tuple[bool, bool], ...] = ((True, True),)) -> tuple[Transport, Binds]:
    binds = Binds(hp, kinds)
    transport = Transport(hp.live, hp.pipeline, binds, hp.sender, hp.sequences, threading.Event(),  # type: ignore[arg-type]
                          connect=binds.connect)
    transport._bind_all()
    return transport, binds


def test_the_transport_hands_a_read_on_then_takes_the_link_down(hot_path):
    hp = hot_path()
    transport, binds = bound_transport(hp)
    [(link, out)] = transport.outgoing.items()
    hp.mo(3)
    hp.start_batches()
    hp.answer()  # batch 1: its resp's guard awaits the SMSC's confirmation
    [part] = hp.sender.take()  # its reply
    seq = int.from_bytes(part[12:16], "big")
    reply = ReplyTo(link, 4)
    out.answer(ReplyTo(link, 1), Status.ROK, "1")
    out.flush(T0)
    [question] = [q for c, _s, q, _b in binds.socks[0].written() if c == CommandId.ENQUIRE_LINK]
    got = Received(mos=[(inbound(4), reply)], submit_resps=[(seq, 0, "m")], answered=[question], down="SMSC sent unbind")
    with pytest.raises(LinkDown, match="SMSC sent unbind"):
        transport._take(got, out)
    assert [r for _mo, r in hp.pipeline.deferred] == [reply] and hp.pipeline.clears_waiting
    assert hp.sender.inflight == 0  # the submit_sm_resp counted before the link went


def test_the_peers_goodbye_is_answered_before_the_link_goes_down(hot_path):
    hp = hot_path()
    transport, binds = bound_transport(hp)
    [(link, out)] = transport.outgoing.items()
    binds.socks[0].feed(header(CommandId.UNBIND, 9))
    with pytest.raises(LinkDown, match="SMSC sent unbind"):
        transport._take(link.read(T0), out)
    assert [(c, q) for c, _s, q, _b in binds.socks[0].written()] == [(CommandId.UNBIND_RESP, 9)]


def test_the_transport_writes_each_resp_on_its_own_links_write_side(hot_path):
    hp = hot_path()
    transport, binds = bound_transport(hp, kinds=((True, False), (False, True)))  # a receiver and a transmitter
    rx, tx = transport.links
    rx_sock, tx_sock = binds.socks
    transport._answer([(ReplyTo(rx, 1), Status.ROK, "g"), (ReplyTo(tx, 2, True), Status.RX_T_APPN, None)])
    hp.sender.enqueue([entry(0)])
    transport._send_outbox(T0)  # submits go on the link that can transmit
    transport._flush()
    assert kinds_of(rx_sock.written()) == ["DELIVER_SM_RESP", "ENQUIRE_LINK"]
    assert [(c, s, q) for c, s, q, _b in tx_sock.written()][0] == (CommandId.DATA_SM_RESP, Status.RX_T_APPN, 2)
    assert len(tx_sock.sends) == 1 and len(rx_sock.sends) == 1  # one write each


def test_a_link_lost_before_the_answer_confirms_nothing_and_its_resps_go_nowhere(hot_path):
    """The SMSC's answer to a dead link's question never reaches the pipeline: the write side that
    asked went with the link, the new link's never asked it (sequence numbers are the bot's), and a
    resp the pipeline still returns for the old link is not written on the new one."""
    hp = hot_path()
    transport, binds = bound_transport(hp)
    [old] = transport.links
    transport._answer([(ReplyTo(old, 1), Status.ROK, "g1")])
    transport._flush()
    [old_sock] = binds.socks
    [question] = [q for c, _s, q, _b in old_sock.written() if c == CommandId.ENQUIRE_LINK]
    transport._close_all()
    assert old_sock.closed and transport.outgoing == {}
    transport._bind_all()
    [(new, new_out)] = transport.outgoing.items()
    [new_sock] = binds.socks
    new_sock.feed(header(CommandId.ENQUIRE_LINK_RESP, question))
    transport._take(new.read(T0 + 1), new_out)
    assert not hp.pipeline.clears_waiting
    transport._answer([(ReplyTo(old, 2), Status.ROK, "g2")])
    transport._flush()
    assert new_sock.written() == [] and old_sock.written() == []
