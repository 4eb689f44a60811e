"""`smsbot.session.Link` (a link's read side) on an in-memory socket: framing across reads, the
partial-PDU timeout, the size limit, an unframeable stream, what a read returns (the answers
link-level PDUs get, refusals, our questions answered), the timers. Its write side:
tests/unit/test_outgoing.py."""

from __future__ import annotations

import re

import pytest

from smsbot import pdu
from smsbot.messages import CommandId, Status
from smsbot.session import Link, LinkDown
from tests.helpers import FakeSocket, Reads, data_sm, deliver_sm, header, make_link, receipt_pdu, submit_sm_resp

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
    assert sink.refused == [] and sink.owed == []  # MOs and receipts are answered by the pipeline, after Redis


def test_a_receipt_without_an_id_is_acknowledged_here():
    link, sock, sink = link_and_sink()
    from smsbot.messages import DeliverSm

    sock.feed(pdu.encode_deliver_sm(DeliverSm(9, source_addr="1", destination_addr="2", esm_class=0x04,
                                              short_message=b"stat:DELIVRD")))
    read(link, T0, sink)
    assert sink.receipts == [] and sink.refused == [(9, Status.ROK, False)]


def test_a_body_that_can_never_decode_is_refused_for_good():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.DELIVER_SM, 4, body=b"\x00\x01"))  # cut short in the mandatory part
    sock.feed(header(CommandId.DATA_SM, 5, body=b"\x00"))
    read(link, T0, sink)
    read(link, T0, sink)
    assert sink.mos == []
    assert sink.refused == [(4, Status.RX_P_APPN, False), (5, Status.RX_P_APPN, True)]  # data_sm: data_sm_resp


def owed(sink: Reads) -> list[tuple[int, int, int]]:
    """(command_id, status, sequence) of the answers the reads owe the SMSC."""
    return [(c, s, q) for c, s, q, _b in pdu.Framer().feed(b"".join(sink.owed))]


def test_link_level_pdus_get_their_answers_here():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.ENQUIRE_LINK, 41) + header(CommandId.QUERY_SM, 42)
              + header(CommandId.GENERIC_NACK, 43, Status.RINVCMDID) + header(CommandId.UNBIND_RESP, 44))
    read(link, T0, sink)
    assert sock.sends == []  # the read side never writes a bound link: its write side sends them
    assert owed(sink) == [
        (CommandId.ENQUIRE_LINK_RESP, 0, 41), (CommandId.GENERIC_NACK, Status.RINVCMDID, 42)]
    assert sink.submit_resps == [(43, Status.RINVCMDID, "")]  # a generic_nack answers one of our submits


def test_a_generic_nack_without_a_status_still_fails_its_submit():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.GENERIC_NACK, 8, 0))
    read(link, T0, sink)
    assert sink.submit_resps == [(8, Status.RSYSERR, "")]


def test_unbind_is_answered_and_the_link_is_down():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.UNBIND, 3) + deliver_sm(4))
    assert read(link, T0, sink) == "SMSC sent unbind"
    assert owed(sink) == [(CommandId.UNBIND_RESP, 0, 3)] and sink.mos == []  # nothing after it is taken


def test_the_smsc_closing_or_a_failing_socket_is_link_down():
    link, sock, sink = link_and_sink()
    sock.peer_closed = True
    assert read(link, T0, sink) == "SMSC closed the connection"
    link, sock, sink = link_and_sink()
    sock.recv_error = ConnectionResetError(104, "Connection reset by peer")
    assert re.match("recv failed: .*reset", read(link, T0, sink))


def test_nothing_to_read_is_not_an_event():
    link, sock, sink = link_and_sink()
    read(link, T0 + 5, sink)
    assert link.last_pdu == T0 and sink.mos == []


def test_an_idle_link_asks_for_a_keepalive_and_dies_when_nothing_answers_it(smsc):
    link, sock, sink = link_and_sink()
    assert not link.check(T0 + 30, smsc)
    assert link.check(T0 + 30.5, smsc)  # due: the write side sends the enquire_link
    assert not link.check(T0 + 31, smsc)  # asked once
    assert link.next_deadline(smsc) == T0 + 30.5 + smsc.response_timeout
    link.check(T0 + 40.5, smsc)  # exactly the response timeout: still alive
    with pytest.raises(LinkDown, match="enquire_link unanswered"):
        link.check(T0 + 40.6, smsc)


def test_an_answered_enquire_link_keeps_the_link_and_is_returned_by_its_sequence(smsc):
    link, sock, sink = link_and_sink()
    assert link.check(T0 + 31, smsc)
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 101))
    read(link, T0 + 32, sink)
    assert sink.answered == [101] and link.enquire_sent_at is None and link.last_pdu == T0 + 32
    assert not link.check(T0 + 50, smsc)
    assert link.next_deadline(smsc) == T0 + 32 + 30


def test_answers_to_our_questions_are_returned_in_the_order_they_came():
    link, sock, sink = link_and_sink()
    sock.feed(header(CommandId.ENQUIRE_LINK_RESP, 9) + deliver_sm(1) + header(CommandId.ENQUIRE_LINK_RESP, 7))
    read(link, T0, sink)
    assert sink.answered == [9, 7] and len(sink.mos) == 1


def test_goodbye_read_refuses_mos_for_now_and_ends_with_the_answer():
    link, sock, sink = link_and_sink()
    sock.feed(deliver_sm(5) + data_sm(6))
    got = link.goodbye_read()
    assert got.down is None and [(r.sequence, status, r.detail) for r, status in got.refused] == [
        (5, Status.RX_T_APPN, False), (6, Status.RX_T_APPN, True)]  # the SMSC delivers them again
    assert link.goodbye_read().down is None  # nothing there yet
    sock.feed(header(CommandId.UNBIND_RESP, 3))
    assert link.goodbye_read().down == "goodbye answered"
    sock.peer_closed = True
    assert link.goodbye_read().down == "SMSC closed the connection"


def test_the_framer_cuts_a_stream_fed_octet_by_octet():
    stream = deliver_sm(1, "A") + header(CommandId.ENQUIRE_LINK, 2) + submit_sm_resp(3, 0, "m")
    framer = pdu.Framer()
    frames = [f for i in range(len(stream)) for f in framer.feed(stream[i:i + 1])]
    assert [(c, q) for c, _s, q, _b in frames] == [(CommandId.DELIVER_SM, 1), (CommandId.ENQUIRE_LINK, 2),
                                                  (CommandId.SUBMIT_SM_RESP, 3)]
    assert framer.buffered == 0
