"""`smsbot.session.Link` on an in-memory socket: framing across reads, the partial-PDU timeout, the
size limit, an unframeable stream, what a read returns, link-level PDUs answered, the timers and
the confirmation of what the SMSC has read."""

from __future__ import annotations

import re

import pytest

from smsbot import pdu
from smsbot.messages import CommandId, Status
from smsbot.session import Link, LinkDown, SequenceGenerator
from tests.helpers import (FakeSocket, Reads, data_sm, deliver_sm, header, kinds_of, make_link, receipt_pdu,
                           submit_sm_resp)

pytestmark = pytest.mark.unit
T0 = 1000.0


@pytest.fixture
def smsc(unit_settings):
    return unit_settings(**{"smsc.response_timeout": 10, "smsc.enquire_link_interval": 30}).smsc


def link_and_sink(**kw) -> tuple[Link, FakeSocket, Reads]:
    sock = FakeSocket()
    return make_link(sock, now=T0, **kw), sock, Reads()


def read(link: Link, now: float, sink: Reads) -> str | None:
    """One read of `link`, gathered in `sink`; why the link is down (None: alive)."""
    return sink.add(link.read(now)).down


def test_a_pdu_split_across_reads_is_handed_on_once_complete():
    link, sock, sink = link_and_sink()
    whole = deliver_sm(7, "0000", msisdn="13800138000")
    sock.feed(whole[:5])
    read(link, T0 + 1, sink)
    sock.feed(whole[5:30])
    read(link, T0 + 2, sink)
    assert sink.mos == [] and link.framer.buffered == 30
    sock.feed(whole[30:])
    read(link, T0 + 3, sink)
    [(mo, data)] = sink.mos
    assert (mo.msisdn, mo.short_code, mo.text, mo.sequence, data) == ("13800138000", "10086", "0000", 7, False)
    assert link.partial_since is None and link.last_pdu == T0 + 3


def test_several_pdus_and_a_partial_one_in_one_read():
    link, sock, sink = link_and_sink()
    a, b, c = deliver_sm(1, "A"), deliver_sm(2, "B"), deliver_sm(3, "C")
    sock.feed(a + b + c[:10])
    read(link, T0 + 1, sink)
    assert [m.text for m, _d in sink.mos] == ["A", "B"]
    assert link.partial_since == T0 + 1  # complete PDUs arrived: the partial one's timer starts now
    sock.feed(c[10:])
    read(link, T0 + 2, sink)
    assert [m.text for m, _d in sink.mos] == ["A", "B", "C"] and link.partial_since is None


def test_a_partial_pdu_that_never_completes_kills_the_link(smsc):
    link, sock, sink = link_and_sink()
    sock.feed(deliver_sm(1)[:20])
    read(link, T0 + 1, sink)
    link.check(T0 + 1 + smsc.response_timeout, smsc)  # not yet overdue
    with pytest.raises(LinkDown, match="did not complete within 10 s .20 octets buffered"):
        link.check(T0 + 1.001 + smsc.response_timeout, smsc)


def test_stray_bytes_are_not_life(smsc):
    """More bytes of the same partial PDU do not restart its timer, nor the idle timer."""
    link, sock, sink = link_and_sink()
    whole = deliver_sm(1, "x" * 100)
    sock.feed(whole[:20])
    read(link, T0 + 1, sink)
    sock.feed(whole[20:40])
    read(link, T0 + 9, sink)
    assert link.partial_since == T0 + 1 and link.last_pdu == T0
    with pytest.raises(LinkDown, match="did not complete"):
        link.check(T0 + 11.5, smsc)


def test_a_header_beyond_the_size_limit_is_refused_as_soon_as_it_is_visible():
    link, sock, sink = link_and_sink(max_pdu_bytes=1024)
    sock.feed((1025).to_bytes(4, "big"))  # the length alone: nothing else of the PDU has come
    assert "unframeable stream: bad command_length 1025" in read(link, T0, sink)
    assert sink.mos == []


def test_an_unframeable_stream_hands_on_what_was_framed_before_it():
    """submit_sm_resps read in the same read as a corrupt header still count (or their submits go twice)."""
    link, sock, sink = link_and_sink()
    sock.feed(submit_sm_resp(5, 0, "abc") + submit_sm_resp(6, Status.RTHROTTLED) + b"\x00\x00\x00\x03" + b"\x00" * 12)
    assert "bad command_length 3" in read(link, T0, sink)
    assert sink.submit_resps == [(5, 0, "abc"), (6, Status.RTHROTTLED, "")]
    sock.feed(deliver_sm(1))
    assert read(link, T0, sink)  # the framer stays broken


def test_deliver_sm_data_sm_and_receipts_go_to_their_place():
    link, sock, sink = link_and_sink()
    sock.feed(deliver_sm(1, "0000") + data_sm(2, "CXLL") + receipt_pdu(3, "abc", "DELIVRD")
              + receipt_pdu(4, "def", "UNDELIV", as_data_sm=True))
    read(link, T0, sink)
    assert [(m.text, m.sequence, d) for m, d in sink.mos] == [("0000", 1, False), ("CXLL", 2, True)]
    assert [(r.message_id, r.state, seq, d) for r, seq, d in sink.receipts] == [
        ("abc", "DELIVRD", 3, False), ("def", "UNDELIV", 4, True)]
    assert link.out == []  # MOs and receipts are answered by the pipeline, after Redis


def test_a_receipt_without_an_id_is_acknowledged_here():
    link, sock, sink = link_and_sink()
    from smsbot.messages import DeliverSm

    sock.feed(pdu.encode_deliver_sm(DeliverSm(9, source_addr="1", destination_addr="2", esm_class=0x04,
                                              short_message=b"stat:DELIVRD")))
    read(link, T0, sink)
    link.flush(T0)
    assert sink.receipts == [] and [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.DELIVER_SM_RESP, Status.ROK, 9)]


def test_a_body_that_can_never_decode_is_refused_for_good():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.DELIVER_SM, 4, body=b"\x00\x01"))  # cut short in the mandatory part
    sock.feed(header(CommandId.DATA_SM, 5, body=b"\x00"))
    read(link, T0, sink)
    read(link, T0, sink)
    link.flush(T0)
    assert sink.mos == []
    assert [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.DELIVER_SM_RESP, Status.RX_P_APPN, 4), (CommandId.DATA_SM_RESP, Status.RX_P_APPN, 5)]


def test_link_level_pdus_are_answered_here():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.ENQUIRE_LINK, 41) + header(CommandId.QUERY_SM, 42)
              + header(CommandId.GENERIC_NACK, 43, Status.RINVCMDID) + header(CommandId.UNBIND_RESP, 44))
    read(link, T0, sink)
    link.flush(T0)
    assert [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.ENQUIRE_LINK_RESP, 0, 41), (CommandId.GENERIC_NACK, Status.RINVCMDID, 42)]
    assert sink.submit_resps == [(43, Status.RINVCMDID, "")]  # a generic_nack answers one of our submits


def test_a_generic_nack_without_a_status_still_fails_its_submit():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.GENERIC_NACK, 8, 0))
    read(link, T0, sink)
    assert sink.submit_resps == [(8, Status.RSYSERR, "")]


def test_unbind_is_answered_and_the_link_is_down():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.UNBIND, 3))
    assert read(link, T0, sink) == "SMSC sent unbind"
    assert [(c, q) for c, _s, q, _b in sock.written()] == [(CommandId.UNBIND_RESP, 3)]


def test_the_smsc_closing_or_a_failing_socket_is_link_down():
    link, sock, sink = link_and_sink()
    sock.peer_closed = True
    assert read(link, T0, sink) == "SMSC closed the connection"
    link, sock, sink = link_and_sink()
    sock.recv_error = ConnectionResetError(104, "Connection reset by peer")
    assert re.match("recv failed: .*reset", read(link, T0, sink))
    link, sock, sink = link_and_sink()
    link.respond(1, Status.ROK)
    sock.send_error = BrokenPipeError(32, "Broken pipe")
    with pytest.raises(LinkDown, match="send failed"):
        link.flush(T0)


def test_nothing_to_read_is_not_an_event():
    link, sock, sink = link_and_sink()
    read(link, T0 + 5, sink)
    assert link.last_pdu == T0 and sink.mos == []


def test_respond_writes_deliver_sm_resp_or_data_sm_resp_in_one_write():
    link, sock, _ = link_and_sink()
    link.respond(11, Status.ROK)
    link.respond(12, Status.RX_T_APPN, data_sm=True)
    link.flush(T0)
    link.flush(T0)  # nothing queued: no write
    assert len(sock.sends) == 1 and link.flushes == 1
    assert [(c, s, q) for c, s, q, _b in sock.written()] == [
        (CommandId.DELIVER_SM_RESP, Status.ROK, 11), (CommandId.DATA_SM_RESP, Status.RX_T_APPN, 12)]


def test_an_idle_link_sends_enquire_link_and_dies_when_it_is_not_answered(smsc):
    link, sock, sink = link_and_sink(sequences=SequenceGenerator(100))
    link.check(T0 + 30, smsc)
    assert link.out == []
    link.check(T0 + 30.5, smsc)
    link.flush(T0)
    assert [(c, q) for c, _s, q, _b in sock.written()] == [(CommandId.ENQUIRE_LINK, 101)]
    link.check(T0 + 40.5, smsc)  # exactly the response timeout: still alive
    with pytest.raises(LinkDown, match="enquire_link unanswered"):
        link.check(T0 + 40.6, smsc)


def test_an_answered_enquire_link_keeps_the_link(smsc):
    link, sock, sink = link_and_sink(sequences=SequenceGenerator(100))
    link.check(T0 + 31, smsc)
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 101))
    read(link, T0 + 32, sink)
    assert link.enquire_sent_at is None and link.last_pdu == T0 + 32
    link.check(T0 + 50, smsc)
    assert link.next_deadline(smsc) == T0 + 32 + 30


def test_confirm_asks_once_and_learns_which_writes_were_read(smsc):
    link, sock, sink = link_and_sink(sequences=SequenceGenerator(7))
    link.respond(1, Status.ROK)
    link.confirm(T0)
    link.confirm(T0)  # one question at a time
    assert link.confirming
    link.flush(T0)
    assert kinds_of(sock.written()) == ["DELIVER_SM_RESP", "ENQUIRE_LINK"]
    link.respond(2, Status.ROK)
    link.flush(T0)  # write 2: not covered by the question in write 1
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 999))  # some other enquire_link's answer
    read(link, T0 + 1, sink)
    assert link.confirmed == 0 and link.confirming
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 8))
    read(link, T0 + 1, sink)
    assert link.confirmed == 1 and not link.confirming


def test_an_unanswered_confirmation_kills_the_link(smsc):
    link, sock, sink = link_and_sink()
    link.confirm(T0)
    link.flush(T0)
    assert link.next_deadline(smsc) == T0 + smsc.response_timeout
    with pytest.raises(LinkDown, match="enquire_link unanswered"):
        link.check(T0 + smsc.response_timeout + 0.1, smsc)


def test_the_framer_cuts_a_stream_fed_octet_by_octet():
    stream = deliver_sm(1, "A") + header(CommandId.ENQUIRE_LINK, 2) + submit_sm_resp(3, 0, "m")
    framer = pdu.Framer()
    frames = [f for i in range(len(stream)) for f in framer.feed(stream[i:i + 1])]
    assert [(c, q) for c, _s, q, _b in frames] == [(CommandId.DELIVER_SM, 1), (CommandId.ENQUIRE_LINK, 2),
                                                  (CommandId.SUBMIT_SM_RESP, 3)]
    assert framer.buffered == 0
