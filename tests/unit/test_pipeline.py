"""`smsbot.pipeline.Pipeline` with the real Dispatcher and OutboxSender, on fake round trips and a
`Link` and its `Outgoing` on an in-memory socket: batching and per-subscriber order, flow control, answers per MO,
the redelivery guard's life, the records each round trip carries (or gets back on failure), and
MOs whose slot is mid-migration (TRYAGAIN) put back while the rest is answered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from smsbot.messages import CommandId, Segment, Status
from smsbot.pipeline import BATCH_MAX, MARKS_HOLD_S, MAX_IN_FLIGHT, SLOT_RETRY_PAUSES, SLOT_WAIT_S, SPLIT_FROM
from smsbot.session import ReplyTo
from tests.helpers import (data_sm, deliver_sm, entry, error_reply, header, inbound, kinds_of, receipt_pdu, resps,
                           sequences_of)

pytestmark = pytest.mark.unit





def handled_and_confirmed(hp, sequence: int) -> None:
    """MO `sequence` batched, answered by Redis, its resp written and confirmed read by the SMSC."""
    hp.mo(sequence)
    hp.start_batches()
    hp.answer()
    confirm_all(hp, hp.flush())

def two_batches_in_flight(hp):
    """Two MOs of two subscribers, each in a round trip of its own, both unanswered: the round trips."""
    hp.mo(1, "13800138000")
    hp.start_batches()
    hp.mo(2, "13900139000")
    hp.start_batches()
    rt1, rt2 = hp.store.roundtrips
    return rt1, rt2

def record_due(hp) -> bool:
    """The transport's records round trip once a moved watermark has waited `MARKS_HOLD_S`."""
    hp.clock.advance(MARKS_HOLD_S + 0.001)
    return hp.pipeline.record()

def numbers(n: int) -> list[str]:
    return [f"1390000{i:04d}" for i in range(n)]


def enquire_links(frames) -> list[int]:
    return [seq for cid, _s, seq, _b in frames if cid == CommandId.ENQUIRE_LINK]


def confirm_all(hp, frames) -> None:
    """The SMSC answers every enquire_link among `frames` (it read everything before them)."""
    if not enquire_links(frames):
        return
    hp.smsc_sends(*(header(CommandId.ENQUIRE_LINK_RESP, seq) for seq in enquire_links(frames)))


# -- ack after store -------------------------------------------------------------------------------------
def test_an_mo_is_acknowledged_only_once_redis_answered(hot_path):
    hp = hot_path()
    hp.smsc_sends(deliver_sm(7, "0000"))
    hp.start_batches()
    [rt] = hp.store.roundtrips
    assert hp.store.kinds(rt) == ["mo"]
    assert resps(hp.flush()) == []  # the effect is not stored yet: nothing is acknowledged
    assert hp.answer(rt)
    assert resps(hp.flush()) == [(7, Status.ROK)]
    assert hp.sender.backlog == 1  # its reply, handed to the sender in the same turn
    [(outcomes, _latency)] = hp.batches
    assert [oc.outcome for oc in outcomes] == ["menu_sent"]


def test_a_data_sm_is_answered_with_data_sm_resp(hot_path):
    hp = hot_path()
    hp.smsc_sends(data_sm(8, "0000"))
    hp.start_batches()
    hp.answer()
    assert [(c, s, q) for c, s, q, _b in hp.flush() if c != CommandId.ENQUIRE_LINK] == [
        (CommandId.DATA_SM_RESP, Status.ROK, 8)]


def test_redis_unreachable_is_try_again_and_a_new_session(hot_path):
    hp = hot_path()
    hp.store.refuse = 1
    hp.mo(1)
    hp.mo(2, "13900139000", short_code="99999")  # not ours: acknowledged whatever Redis does
    hp.start_batches()
    assert hp.store.roundtrips == []
    assert sorted(resps(hp.flush())) == [(1, Status.RX_T_APPN), (2, Status.ROK)]
    assert (hp.sessions.new_sessions, hp.sessions.suspicions) == (1, 1)


def test_an_answer_lost_is_try_again_and_the_next_batch_has_a_new_token(hot_path):
    hp = hot_path()
    hp.store.lose = 1
    hp.mo(1)
    hp.start_batches()
    first = hp.store.roundtrips[-1]
    assert hp.answer(first)
    assert resps(hp.flush()) == [(1, Status.RX_T_APPN)]
    assert (hp.sessions.new_sessions, hp.sessions.suspicions) == (1, 1)
    hp.mo(1)  # the SMSC delivers it again
    hp.start_batches()
    [before] = hp.store.mo_calls(first)
    [after] = hp.store.mo_calls(hp.store.roundtrips[-1])
    assert (before.argv.token, after.argv.token) == ("bot-1/1", "bot-1/2")
    assert before.argv.guard_fp == after.argv.guard_fp  # the same MO: its guard from the unknown outcome now holds


def test_two_failed_batches_of_one_session_start_one_new_session(hot_path):
    hp = hot_path()
    hp.store.lose = 2
    rt1, rt2 = two_batches_in_flight(hp)
    hp.answer(rt1)
    hp.answer(rt2)
    assert hp.sessions.new_sessions == 1 and hp.sessions.suspicions == 2
    assert hp.sessions.identity.token == "bot-1/2"


def test_a_script_error_fails_only_its_mo(hot_path):
    hp = hot_path()
    hp.store.script_mo("13900139000", error_reply("ERR user_script:9: bad"))
    hp.mo(1, "13800138000")
    hp.mo(2, "13900139000")
    hp.start_batches()
    hp.answer()
    assert resps(hp.flush()) == [(1, Status.ROK), (2, Status.RX_T_APPN)]
    assert hp.sessions.new_sessions == 0 and hp.sessions.suspicions == 0


def test_a_bug_in_dispatch_is_try_again_and_keeps_the_records(hot_path, monkeypatch):
    hp = hot_path(**{"smsc.window": 1})
    hp.sender.enqueue([entry(0), entry(1)])
    [p] = hp.sender.take()
    hp.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m")

    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(hp.dispatcher, "prepare", broken)
    hp.mo(1)
    hp.smsc_sends(receipt_pdu(2))
    hp.start_batches()
    assert sorted(resps(hp.flush())) == [(1, Status.RX_T_APPN), (2, Status.RX_T_APPN)]
    assert hp.sender.pending_count == 1 and hp.sender.room == 0  # the accepted reply still waits for its record
    assert hp.sessions.new_sessions == 1


def test_stopping_refuses_what_was_not_batched(hot_path):
    hp = hot_path()
    for seq, n in enumerate(numbers(3), 1):
        hp.mo(seq, n)
    hp.write(hp.pipeline.refuse_deferred())
    assert resps(hp.flush()) == [(1, Status.RX_T_APPN), (2, Status.RX_T_APPN), (3, Status.RX_T_APPN)]
    assert hp.pipeline.deferred == [] and not hp.pipeline.startable()


# -- batching and order ---------------------------------------------------------------------------------------
def test_no_more_than_max_in_flight_round_trips(hot_path):
    hp = hot_path()
    for seq, n in enumerate(numbers(MAX_IN_FLIGHT + 1), 1):
        hp.mo(seq, n)
        hp.start_batches()
    assert len(hp.store.roundtrips) == MAX_IN_FLIGHT == len(hp.pipeline.pending)
    assert not hp.pipeline.startable() and len(hp.pipeline.deferred) == 1
    hp.answer(hp.store.roundtrips[0])
    assert hp.pipeline.startable()
    hp.start_batches()
    assert len(hp.store.roundtrips) == MAX_IN_FLIGHT + 1


def test_one_subscriber_is_never_in_two_round_trips(hot_path):
    hp = hot_path()
    hp.mo(1, "13800138000", "0000")
    hp.start_batches()
    hp.mo(2, "13800138000", "1")  # the same subscriber's next MO, while the first is in Redis
    hp.mo(3, "13900139000", "0000")
    hp.start_batches()
    rt1, rt2 = hp.store.roundtrips
    assert [c.argv.msisdn for c in hp.store.mo_calls(rt2)] == ["13900139000"]
    assert [mo.sequence for mo, _r in hp.pipeline.deferred] == [2]
    assert not hp.pipeline.startable()  # what waits is busy: no round trip, and no busy loop
    hp.answer(rt2)
    hp.start_batches()
    assert len(hp.store.roundtrips) == 2  # its first MO is still in Redis: the second still waits
    hp.answer(rt1)
    hp.start_batches()
    rt3 = hp.store.roundtrips[-1]
    assert [(c.argv.msisdn, c.argv.handler) for c in hp.store.mo_calls(rt3)] == [("13800138000", "reply")]
    hp.answer(rt3)
    assert [seq for seq, _s in resps(hp.flush())] == [3, 1, 2]  # the subscriber's resps in its order


def test_many_ready_mos_are_split_in_two_when_nothing_is_in_flight(hot_path):
    hp = hot_path()
    for seq, n in enumerate(numbers(SPLIT_FROM + 1), 1):
        hp.mo(seq, n)
    hp.start_batches()
    half = (SPLIT_FROM + 2) // 2
    assert [len(hp.store.mo_calls(rt)) for rt in hp.store.roundtrips] == [half, SPLIT_FROM + 1 - half]


def test_fewer_than_the_split_go_in_one_batch(hot_path):
    hp = hot_path()
    for seq, n in enumerate(numbers(SPLIT_FROM - 1), 1):
        hp.mo(seq, n)
    hp.start_batches()
    assert [len(hp.store.mo_calls(rt)) for rt in hp.store.roundtrips] == [SPLIT_FROM - 1]


def test_a_batch_holds_at_most_batch_max(hot_path):
    hp = hot_path()
    for seq, n in enumerate(numbers(2 * BATCH_MAX + 20), 1):
        hp.mo(seq, n)
    hp.start_batches()
    assert [len(hp.store.mo_calls(rt)) for rt in hp.store.roundtrips] == [BATCH_MAX, BATCH_MAX]
    assert len(hp.pipeline.deferred) == 20


def test_above_high_water_mos_wait_but_receipts_go(hot_path):
    hp = hot_path(**{"smsc.window": 1})
    assert hp.pipeline.high_water == 18
    hp.sender.enqueue([entry(i) for i in range(19)])  # replies waiting for the SMSC beyond the mark
    hp.mo(1)
    hp.smsc_sends(receipt_pdu(2, "m9"))
    hp.start_batches()
    [rt] = hp.store.roundtrips
    assert hp.store.kinds(rt) == ["receipt"]
    hp.answer(rt)
    assert resps(hp.flush()) == [(2, Status.ROK)]  # the MO is left unacknowledged: the SMSC's window fills
    assert len(hp.pipeline.deferred) == 1 and not hp.pipeline.startable()
    assert [r.message_id for r in hp.receipts_stored] == ["m9"]


def test_at_high_water_mos_still_go(hot_path):
    hp = hot_path(**{"smsc.window": 1})
    hp.sender.enqueue([entry(i) for i in range(hp.pipeline.high_water)])
    hp.mo(1)
    hp.start_batches()
    assert hp.store.kinds(hp.store.roundtrips[-1]) == ["mo"]


def test_a_receipt_not_stored_is_try_again(hot_path):
    hp = hot_path()
    hp.store.lose = 1
    hp.smsc_sends(receipt_pdu(4, "m1", as_data_sm=True))
    hp.start_batches()
    hp.answer()
    assert [(c, s, q) for c, s, q, _b in hp.flush()] == [(CommandId.DATA_SM_RESP, Status.RX_T_APPN, 4)]
    assert hp.receipts_stored == []


# -- the redelivery guard's life ----------------------------------------------------------------------------------
def test_a_guard_is_confirmed_only_after_the_smsc_read_the_resp(hot_path):
    """Each batch has a number its MOs' guards carry; once the SMSC confirmed reading the resps, the
    session's watermark passes it: at once in this session's own calls, in Redis `MARKS_HOLD_S` later."""
    hp = hot_path()
    hp.mo(1)
    hp.start_batches()
    [first] = hp.store.mo_calls(hp.store.roundtrips[0])
    assert (first.argv.batch, first.argv.mark) == (1, 0) and first.argv.guard_fp
    hp.answer()
    assert not hp.pipeline.clears_waiting
    frames = hp.flush()
    assert kinds_of(frames) == ["DELIVER_SM_RESP", "ENQUIRE_LINK"] and len(hp.sock.sends) == 1  # one write
    assert not hp.pipeline.clears_waiting  # written is not read
    confirm_all(hp, frames)
    assert hp.pipeline.clears_waiting
    hp.mo(2, "13900139000")
    hp.start_batches()
    rt = hp.store.roundtrips[-1]
    assert hp.store.kinds(rt) == ["mo"]  # gathered: one HSET will carry many confirmations
    assert [(c.argv.batch, c.argv.mark) for c in hp.store.mo_calls(rt)] == [(2, 1)]  # its own calls know at once
    hp.answer()
    hp.clock.advance(MARKS_HOLD_S + 0.001)
    hp.mo(3, "13700137000")
    hp.start_batches()
    rt = hp.store.roundtrips[-1]
    assert hp.store.kinds(rt) == ["HSET", "mo"]  # written before the scripts that might meet it
    assert hp.store.marks(rt) == {"bot-1/1": 1}  # batch 2's resp is not read yet
    assert rt.cmds[0][1] == hp.store.keys.marks(0)


def test_a_moved_watermark_goes_in_a_round_trip_of_its_own_when_nothing_else_goes(hot_path):
    hp = hot_path()
    handled_and_confirmed(hp, 1)
    sent = len(hp.store.roundtrips)
    assert hp.pipeline.clears_waiting and not hp.pipeline.record()  # not before it has waited MARKS_HOLD_S
    assert len(hp.store.roundtrips) == sent
    assert record_due(hp)
    rt = hp.store.roundtrips[-1]
    assert hp.store.kinds(rt) == ["HSET"] and hp.store.marks(rt) == {"bot-1/1": 1}
    hp.answer(rt)
    assert not hp.pipeline.clears_waiting and not record_due(hp)


def test_a_new_session_writes_the_last_ones_watermark_before_its_first_script(hot_path):
    """A confirmation not yet written when the link drops goes in the head of the new session's first
    round trip: its scripts never meet a guard whose resp was read as if it had not been."""
    hp = hot_path()
    handled_and_confirmed(hp, 1)
    hp.pipeline.link_lost()
    hp.rebind()  # bound again
    hp.mo(2)  # the same text again, in the new session
    hp.start_batches()
    rt = hp.store.roundtrips[-1]
    assert hp.store.kinds(rt) == ["HSET", "mo"] and hp.store.marks(rt) == {"bot-1/1": 1}
    assert [c.argv.token for c in hp.store.mo_calls(rt)] == ["bot-1/2"]


def test_a_try_again_resp_never_confirms_its_batch(hot_path):
    hp = hot_path()
    hp.store.lose = 1
    hp.mo(1)
    hp.start_batches()
    hp.answer()
    frames = hp.flush()
    assert resps(frames) == [(1, Status.RX_T_APPN)]
    confirm_all(hp, frames)
    confirm_all(hp, hp.flush())
    hp.mo(2, "13900139000")
    hp.start_batches()
    hp.answer()
    confirm_all(hp, hp.flush())
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/2": 2}  # bot-1/1 never passes batch 1


def test_only_resps_that_succeeded_carry_the_guard(hot_path):
    """A script error's resp is "try again" without a guard: the batch is confirmed by the others' resps."""
    hp = hot_path()
    hp.store.script_mo("13900139000", error_reply("ERR user_script:1: boom"))
    hp.mo(1, "13800138000")
    hp.mo(2, "13900139000")
    hp.start_batches()
    hp.answer()
    frames = hp.flush()
    assert sorted(resps(frames)) == [(1, Status.ROK), (2, Status.RX_T_APPN)]
    assert hp.out.asking and hp.out._question[2] == ["1"]  # only the good resp's batch is guarded
    confirm_all(hp, frames)
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/1": 1}


def test_the_watermark_waits_for_every_earlier_batch(hot_path):
    """Two batches in flight; the later one's resps are read first: the watermark stays below the
    earlier until its resps are read too."""
    hp = hot_path()
    rt1, rt2 = two_batches_in_flight(hp)
    hp.answer(rt2)
    confirm_all(hp, hp.flush())  # batch 2's resp read
    assert not hp.pipeline.clears_waiting  # batch 1 is not answered yet: the watermark has not moved
    hp.answer(rt1)
    confirm_all(hp, hp.flush())
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/1": 2}


def test_confirmation_is_asked_again_on_an_idle_link_until_every_guard_is_covered(hot_path):
    hp = hot_path()
    hp.mo(1, "13800138000")
    hp.start_batches()
    hp.answer()
    first = hp.flush()  # write 1: resp 1 and the question
    hp.mo(2, "13900139000")
    hp.start_batches()
    hp.answer()
    second = hp.flush()  # write 2: resp 2, no second question while the first is open
    assert kinds_of(second) == ["DELIVER_SM_RESP"]
    confirm_all(hp, first)  # covers write 1 only
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/1": 1}
    hp.answer()
    idle = hp.flush()  # nothing queued, but guard 2 is not covered yet: ask again
    assert kinds_of(idle) == ["ENQUIRE_LINK"]
    confirm_all(hp, idle)
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/1": 2}
    hp.answer()
    writes = len(hp.sock.sends)
    assert hp.flush() == [] and len(hp.sock.sends) == writes  # every guard covered: the link stays quiet


def test_an_enquire_link_answered_for_another_reason_confirms_nothing(hot_path):
    hp = hot_path()
    hp.mo(1)
    hp.start_batches()
    hp.answer()
    [asked] = enquire_links(hp.flush())
    hp.smsc_sends(header(CommandId.ENQUIRE_LINK_RESP, asked + 1000))
    assert not hp.pipeline.clears_waiting


def test_watermarks_whose_write_failed_go_again_first(hot_path):
    hp = hot_path()
    handled_and_confirmed(hp, 1)
    hp.clock.advance(MARKS_HOLD_S + 0.001)
    hp.store.lose = 1
    hp.mo(2, "13900139000")
    hp.start_batches()
    lost = hp.store.roundtrips[-1]
    assert hp.store.marks(lost) == {"bot-1/1": 1}
    hp.answer(lost)
    hp.mo(3, "13700137000")
    hp.start_batches()
    again = hp.store.roundtrips[-1]
    assert hp.store.kinds(again)[0] == "HSET" and hp.store.marks(again) == {"bot-1/1": 1}


def test_a_lost_link_keeps_the_guards_of_its_unconfirmed_resps(hot_path):
    hp = hot_path()
    hp.mo(1)
    hp.start_batches()
    hp.answer()
    hp.flush()  # resp and question written; the link dies before the answer
    hp.mo(2, "13900139000")
    hp.start_batches()  # in Redis when the link dies: completed, its reply kept
    hp.mo(3, "13700137000")  # not batched yet: never acknowledged, the SMSC sends it again
    hp.pipeline.link_lost()
    assert hp.sessions.new_sessions == 1 and hp.pipeline.deferred == [] and hp.pipeline.pending == []
    assert hp.sender.backlog == 2  # both stored replies are kept
    hp.rebind()  # bound again
    hp.mo(4, "13600136000")
    hp.start_batches()
    assert hp.store.kinds(hp.store.roundtrips[-1]) == ["mo"]  # nothing of the first session's to write
    hp.answer()
    confirm_all(hp, hp.flush())
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/2": 3}  # bot-1/1's guards hold


def test_an_ended_sessions_watermark_is_forgotten_once_no_guard_can_need_it(hot_path):
    hp = hot_path()
    handled_and_confirmed(hp, 1)
    hp.pipeline.link_lost()
    hp.rebind()
    hp.mo(2)
    hp.start_batches()  # the next session begins: the first one ends
    hp.answer()
    confirm_all(hp, hp.flush())
    record_due(hp)
    assert "HDEL" not in hp.store.kinds(hp.store.roundtrips[-1])  # its guards may still hold
    hp.answer()
    hp.clock.advance(hp.live.settings.dispatch.redelivery_guard_seconds + 1)  # every guard of it has expired
    hp.mo(3, "13900139000")
    hp.start_batches()
    hp.answer()
    confirm_all(hp, hp.flush())
    record_due(hp)
    rt = hp.store.roundtrips[-1]
    assert ("HDEL", hp.store.keys.marks(0), "bot-1/1") in rt.cmds and hp.store.marks(rt) == {"bot-1/2": 3}


# -- records ------------------------------------------------------------------------------------------------------
def accepted_and_blocked(hp) -> tuple[str, str]:
    """One reply accepted and not recorded, another waiting behind it (window 1)."""
    hp.settle_records()
    hp.sender.enqueue([entry(0), entry(1)])
    [p] = hp.sender.take()
    assert hp.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m0")
    assert hp.sender.blocked_by_records
    return entry(0)[:2]


def test_records_that_hold_back_submits_ride_the_next_batch(hot_path):
    hp = hot_path(**{"smsc.window": 1})
    stream, entry_id = accepted_and_blocked(hp)
    hp.mo(1)
    hp.start_batches()
    rt = hp.store.roundtrips[-1]
    assert hp.store.kinds(rt) == ["mo", "XDEL"] and hp.store.recorded(rt) == {stream: [entry_id]}
    assert len(hp.sender.take()) == 1  # written counts as recorded: the next submit may go
    hp.answer(rt)
    backlog = hp.sender.backlog  # the MO's reply
    hp.sender.enqueue([entry(0)])
    assert hp.sender.backlog == backlog == 1  # recorded: a late copy of it is not sent again


def test_records_of_a_failed_round_trip_come_back_and_go_again(hot_path):
    hp = hot_path(**{"smsc.window": 1})
    stream, entry_id = accepted_and_blocked(hp)
    hp.store.lose = 1
    hp.mo(1)
    hp.start_batches()
    hp.answer()
    assert hp.sender.pending_count == 1 and hp.sender.room == 0 and hp.sender.take() == []
    assert hp.sessions.suspicions == 1
    hp.mo(2, "13900139000")
    hp.start_batches()
    assert hp.store.recorded(hp.store.roundtrips[-1]) == {stream: [entry_id]}


def test_a_records_only_round_trip_that_fails_restores_them_without_a_new_session(hot_path):
    hp = hot_path(**{"smsc.window": 1})
    accepted_and_blocked(hp)
    hp.store.lose = 1
    assert record_due(hp)
    assert hp.store.kinds(hp.store.roundtrips[-1]) == ["XDEL"]
    hp.answer()
    assert hp.sender.pending_count == 1 and hp.sender.room == 0
    assert (hp.sessions.suspicions, hp.sessions.new_sessions) == (1, 0)


def test_mt_records_ride_the_next_batch_after_the_scripts_and_records(hot_path):
    hp = hot_path(**{"smsc.window": 5, "smsc.registered_delivery": 1})
    hp.settle_records()
    hp.sender.enqueue([entry(0)])
    [p] = hp.sender.take()
    hp.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m0")
    hp.smsc_sends(receipt_pdu(9, "older"))
    hp.mo(1)
    hp.start_batches()
    assert hp.store.kinds(hp.store.roundtrips[-1]) == ["mo", "XDEL", "RPUSH", "EXPIRE", "receipt"]


def test_nothing_to_record_is_no_round_trip(hot_path):
    hp = hot_path()
    assert not record_due(hp) and hp.store.roundtrips == []


def test_mt_records_of_a_failed_round_trip_go_again(hot_path):
    hp = hot_path(**{"smsc.window": 5, "smsc.registered_delivery": 1})
    hp.settle_records()
    hp.sender.enqueue([entry(0)])
    [p] = hp.sender.take()
    hp.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m0")
    hp.store.lose = 1
    hp.mo(1)
    hp.start_batches()
    lost = hp.store.roundtrips[-1]
    hp.answer(lost)
    assert hp.sender.has_writes
    hp.mo(2, "13900139000")
    hp.start_batches()
    again = hp.store.roundtrips[-1]
    assert [c for c in again.cmds if c[0] == "RPUSH"] == [c for c in lost.cmds if c[0] == "RPUSH"] != []


def test_a_completed_long_mo_carries_its_batchs_number(hot_path):
    """The part completing a long MO runs the MO's step in a round trip of its own: its guard carries
    the number of the part's batch, confirmed with the part's resp."""
    hp = hot_path()
    hp.store.script_mo("13800138000", hp.store.mo_reply("part_complete", extra="0000".encode().hex().encode()))
    hp.pipeline.on_mo(replace(inbound(1, text="00"), segment=Segment(ref=7, total=2, seq=2)), ReplyTo(hp.link, 1, False))
    hp.start_batches()
    part = hp.store.roundtrips[-1]
    hp.answer(part)
    [completed] = hp.store.mo_calls(hp.store.roundtrips[-1])
    assert hp.store.roundtrips[-1] is not part and completed.argv.guard_fp
    assert (completed.argv.batch, completed.argv.mark) == (1, 0)
    confirm_all(hp, hp.flush())
    record_due(hp)
    assert hp.store.marks(hp.store.roundtrips[-1]) == {"bot-1/1": 1}


# -- a slot mid-migration (Redis Cluster: TRYAGAIN) ------------------------------------------------------
TRYAGAIN = "TRYAGAIN Multiple keys request during rehashing of slot"
MOVING = "13800138000"  # a subscriber whose slot is being migrated


def mo_msisdns(hp, rt) -> list[str]:
    return [c.argv.msisdn for c in hp.store.mo_calls(rt)]


def test_an_mo_whose_slot_is_moving_goes_back_while_the_rest_of_its_batch_is_answered(hot_path):
    hp = hot_path()
    hp.store.script_mo(MOVING, error_reply(TRYAGAIN))
    hp.mo(1, MOVING)
    hp.mo(2, "13900139000")
    hp.mo(3, "13700137000")
    hp.start_batches()
    [first] = hp.store.roundtrips
    assert [hp.store.kinds(first)[i] for i in first.give_back] == ["mo", "mo", "mo"]  # the round trip gives them back soon
    assert hp.answer(first)
    assert resps(hp.flush()) == [(2, Status.ROK), (3, Status.ROK)]  # at once, not held by the moving slot
    [(outcomes, _latency)] = hp.batches
    assert [oc.inbound.msisdn for oc in outcomes] == ["13900139000", "13700137000"]  # the waiting MO is not counted yet
    assert [w.mo[0].sequence for w in hp.pipeline.slot_waits] == [1]
    assert not hp.pipeline.startable()  # its pause runs
    assert hp.pipeline.retry_wakeup(hp.clock()) == pytest.approx(SLOT_RETRY_PAUSES[0])  # the loop's select wakes then
    hp.start_batches()
    assert len(hp.store.roundtrips) == 1
    hp.clock.advance(SLOT_RETRY_PAUSES[0])
    assert hp.pipeline.startable() and hp.pipeline.retry_wakeup(hp.clock()) is None
    hp.start_batches()
    second = hp.store.roundtrips[-1]
    assert mo_msisdns(hp, second) == [MOVING]
    hp.answer(second)
    assert resps(hp.flush()) == [(1, Status.ROK)]
    assert hp.pipeline.slot_waits == []


def test_later_mos_of_its_subscriber_stay_behind_an_mo_waiting_for_its_slot(hot_path):
    hp = hot_path()
    hp.store.script_mo(MOVING, *[error_reply(TRYAGAIN)] * 3)  # its first try, then both on the second
    hp.mo(1, MOVING, text="0000")
    hp.start_batches()
    hp.answer()
    hp.mo(2, MOVING, text="1")  # after it, from the same subscriber
    hp.mo(3, "13900139000")
    hp.start_batches()
    assert mo_msisdns(hp, hp.store.roundtrips[-1]) == ["13900139000"]  # the later MO stays behind
    hp.answer()
    assert resps(hp.flush()) == [(3, Status.ROK)]
    hp.start_batches()  # what is ready waits for the moving slot: no round trip, and then nothing spins
    assert len(hp.store.roundtrips) == 2 and not hp.pipeline.startable()
    assert hp.pipeline.retry_wakeup(hp.clock()) == pytest.approx(SLOT_RETRY_PAUSES[0])
    hp.clock.advance(SLOT_RETRY_PAUSES[0])
    hp.start_batches()
    retry = hp.store.roundtrips[-1]
    assert mo_msisdns(hp, retry) == [MOVING, MOVING]
    assert [oc.inbound.sequence for oc in retry_outcomes(hp, retry)] == [1, 2]  # in the order they came
    hp.answer(retry)  # both met TRYAGAIN again: both back, in order, after a longer pause
    assert resps(hp.flush()) == []
    assert [w.mo[0].sequence for w in hp.pipeline.slot_waits] == [1, 2]
    assert [w.due - hp.clock() for w in hp.pipeline.slot_waits] == pytest.approx(  # its third try; the second's first
        [SLOT_RETRY_PAUSES[1], SLOT_RETRY_PAUSES[0]])
    hp.clock.advance(SLOT_RETRY_PAUSES[0])
    hp.start_batches()
    assert len(hp.store.roundtrips) == 3  # the second is due, and stays behind the first
    assert hp.pipeline.retry_wakeup(hp.clock()) == pytest.approx(SLOT_RETRY_PAUSES[1] - SLOT_RETRY_PAUSES[0])
    hp.clock.now = hp.pipeline.slot_waits[0].due  # the first's pause ran out (exactly: no float rounding)
    hp.start_batches()
    assert mo_msisdns(hp, hp.store.roundtrips[-1]) == [MOVING, MOVING]
    hp.answer()
    assert resps(hp.flush()) == [(1, Status.ROK), (2, Status.ROK)]


def retry_outcomes(hp, rt):
    """The outcomes of the batch in flight whose round trip is `rt`."""
    [p] = [p for p in hp.pipeline.pending if p.batch.roundtrip is rt]
    return p.batch.outcomes


def test_an_mo_whose_slot_moves_too_long_is_refused_unapplied_and_its_redelivery_runs_once(hot_path):
    hp = hot_path()
    tries = 0
    while True:
        hp.store.script_mo(MOVING, error_reply(TRYAGAIN))
        if tries == 0:
            hp.mo(1, MOVING)
        hp.start_batches()
        rt = hp.store.roundtrips[-1]
        assert mo_msisdns(hp, rt) == [MOVING]
        rt.arrive()
        _answered, out = hp.pipeline.poll([rt])
        tries += 1
        if out:
            break
        hp.clock.now = hp.clock() + hp.pipeline.retry_wakeup(hp.clock())
        assert hp.clock() >= hp.pipeline.slot_waits[0].due  # woken when its pause ran out
    assert [(status, guard) for _reply, status, guard in out] == [(Status.RX_T_APPN, None)]  # no guard: it comes again
    assert SLOT_WAIT_S <= hp.clock() - 1000.0 < SLOT_WAIT_S + SLOT_RETRY_PAUSES[-1]  # from its first try
    assert hp.pipeline.slot_waits == [] and tries > SLOT_WAIT_S / SLOT_RETRY_PAUSES[-1]
    hp.write(out)
    assert resps(hp.flush()) == [(1, Status.RX_T_APPN)]
    hp.mo(1, MOVING)  # the SMSC redelivers it; the slot has moved
    hp.start_batches()
    hp.answer()
    assert resps(hp.flush()) == [(1, Status.ROK)]
    ran = [r for rt in hp.store.roundtrips for c, r in zip(rt.cmds, rt.replies)
           if hp.store.kind(c) == "mo" and not isinstance(r, Exception)]
    assert len(ran) == 1  # applied once: by the redelivery; every try before ran nothing


def test_mos_waiting_for_their_slot_are_refused_on_stop_and_dropped_with_the_link(hot_path):
    hp = hot_path()
    hp.store.script_mo(MOVING, error_reply(TRYAGAIN))
    hp.mo(1, MOVING)
    hp.start_batches()
    hp.answer()
    hp.mo(2, "13900139000")
    hp.write(hp.pipeline.refuse_deferred())
    assert resps(hp.flush()) == [(1, Status.RX_T_APPN), (2, Status.RX_T_APPN)]
    assert hp.pipeline.slot_waits == [] and not hp.pipeline.startable()
    hp.store.script_mo(MOVING, error_reply(TRYAGAIN))
    hp.mo(3, MOVING)
    hp.start_batches()
    hp.answer()
    hp.pipeline.link_lost()  # never acknowledged: the SMSC delivers it again on the next link
    assert hp.pipeline.slot_waits == [] and hp.pipeline.retry_wakeup(hp.clock()) is None


def test_the_loop_wakes_when_a_round_trips_pause_between_tries_runs_out(hot_path):
    """A cluster round trip waiting out a pause before trying a redirected command again has nothing
    to read meanwhile: the transport's select must wake for it, not after its idle timeout."""
    hp = hot_path()
    hp.mo(1)
    hp.start_batches()
    assert hp.pipeline.retry_wakeup(hp.clock()) is None
    hp.store.roundtrips[-1].pause = 0.02
    assert hp.pipeline.retry_wakeup(hp.clock()) == 0.02
    hp.answer()
    assert hp.pipeline.retry_wakeup(hp.clock()) is None  # answered: nothing waits
