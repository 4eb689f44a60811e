"""`smsbot.outbox.OutboxSender` on a clock the test moves: the window, the one-window record bound
(checked against a model over seeded random walks), TPS, retries, permanent failures, what a lost
lease or a lost bind does to the parts."""

from __future__ import annotations

import random

import pytest

from smsbot.keys import Keys
from smsbot.messages import Status
from smsbot.outbox import THROTTLE_BACKOFF_S, OutboxSender
from smsbot.session import SequenceGenerator
from tests.helpers import Clock, destination_of, entry, make_live, sequences_of

pytestmark = pytest.mark.unit
LONG = "x" * 400  # three GSM-7 parts of 153


def make_sender(settings, **kw) -> tuple[OutboxSender, Clock]:
    clock = Clock()
    return OutboxSender(make_live(settings), SequenceGenerator(), Keys(settings.redis.key_prefix, settings.redis.shards),
                        clock=clock, **kw), clock


@pytest.fixture
def sender(unit_settings):
    def make(**overrides):
        return make_sender(unit_settings(**overrides))
    return make


def accept_all(s: OutboxSender, pdus: list[bytes]) -> None:
    for q in sequences_of(pdus):
        assert s.on_submit_resp(q, Status.ROK, f"m{q}")


def test_no_more_than_the_window_is_in_flight(sender):
    s, _ = sender(**{"smsc.window": 3})
    s.enqueue([entry(i) for i in range(5)])
    first = s.take()
    assert len(first) == 3 and s.inflight == 3 and s.backlog == 2 and s.room == 0
    assert s.take() == []
    assert s.on_submit_resp(sequences_of(first)[0], Status.ROK, "m1")
    assert s.take() == []  # accepted but not recorded: it still counts against the window


def test_accepted_parts_free_the_window_only_once_handed_to_a_round_trip(sender):
    s, _ = sender(**{"smsc.window": 2})
    s.enqueue([entry(i) for i in range(4)])
    accept_all(s, s.take())
    assert s.blocked_by_records and s.room == 0 and s.take() == []
    acks, writes, parts = s.take_pending()
    assert acks == [entry(0)[:2], entry(1)[:2]] and writes == [] and parts == 2
    assert not s.blocked_by_records and len(s.take()) == 2


def test_a_failed_record_gives_the_window_back_to_the_records(sender):
    s, _ = sender(**{"smsc.window": 2})
    s.enqueue([entry(i) for i in range(4)])
    accept_all(s, s.take())
    acks, writes, parts = s.take_pending()
    s.restore_pending(acks, writes, parts)  # the round trip failed: they are not recorded
    assert s.room == 0 and s.take() == [] and s.pending_count == 2
    again = s.take_pending()
    assert again == (acks, writes, parts)


def _entry_of(part: bytes) -> tuple[str, str]:
    """The outbox entry a submit_sm belongs to, read from the PDU (`entry(i)` sends to 1380000<i>)."""
    return entry(int(destination_of(part)[-4:]))[:2]


@pytest.mark.parametrize("window", [1, 2, 5])
@pytest.mark.parametrize("seed", range(8))
def test_a_crash_resends_at_most_one_window(unit_settings, window, seed):
    """Whatever the SMSC answers, whenever records go to Redis (or fail) and binds are lost, the sender
    never sends a part while that makes the parts a crash would send again exceed the window: those
    in flight and those accepted but not yet handed to a round trip that records them (a written
    round trip counts as recorded: Redis executes it even if the bot dies next). Only a failed
    record round trip puts its parts back at risk; then nothing goes until they are recorded.
    Counted by a model outside the sender, over a seeded random walk of one-part replies (replies
    of several parts: `test_accepted_parts_of_an_unfinished_reply_count_against_the_window`)."""
    rnd = random.Random(seed)
    s, clock = make_sender(unit_settings(**{"smsc.window": window}))
    inflight: dict[int, tuple[str, str]] = {}  # sequence -> its entry
    exposed: dict[tuple[str, str], int] = {}  # entry -> its parts sent whose record is not on its way yet
    rounds: list[tuple[list, list, int, dict]] = []  # records taken, their round trip not answered
    accepted = 0
    for i in range(300):
        step = rnd.choice(["reply", "send", "send", "answer", "answer", "answer", "record", "redis", "bind_lost"])
        if step == "reply":
            s.enqueue([entry(i, "hi")])
        elif step == "send":
            sent = s.take()
            for part in sent:
                key = _entry_of(part)
                inflight[sequences_of([part])[0]] = key
                exposed[key] = exposed.get(key, 0) + 1
            assert not sent or sum(exposed.values()) <= window, (i, exposed)
        elif step == "answer" and inflight:
            seq = rnd.choice(sorted(inflight))
            key = inflight.pop(seq)
            status = rnd.choice([Status.ROK, Status.ROK, Status.ROK, Status.RTHROTTLED, Status.RINVDSTADR])
            assert s.on_submit_resp(seq, status, f"m{seq}")
            accepted += status == Status.ROK
            if status == Status.RTHROTTLED:
                exposed[key] -= 1  # not accepted: it goes again, counted again then
                clock.advance(THROTTLE_BACKOFF_S)
        elif step == "record":
            acks, writes, parts = s.take_pending()
            rounds.append((acks, writes, parts, {k: exposed.pop(k) for k in acks if k in exposed}))
        elif step == "redis" and rounds:
            acks, writes, parts, covered = rounds.pop(0)
            if rnd.random() < 0.7:
                s.recorded(acks)
            else:  # the round trip failed: those records are not in Redis
                s.restore_pending(acks, writes, parts)
                for k, n in covered.items():
                    exposed[k] = exposed.get(k, 0) + n
        elif step == "bind_lost":
            s.requeue_inflight()
            for key in inflight.values():
                exposed[key] -= 1  # never answered: it goes again, counted again then
            inflight.clear()
        assert s.inflight == len(inflight)
    assert accepted > window  # the walk went through several windows


def test_accepted_parts_of_an_unfinished_reply_count_against_the_window(sender):
    """README (Crash safety): submits in flight plus submits accepted but not yet recorded never exceed
    `smsc.window`. The first part of a two-part reply accepted is not recorded (a reply is recorded
    whole), so a crash now sends it again: with a window of 3 and its second part and another reply
    in flight, nothing more may go."""
    s, _ = sender(**{"smsc.window": 3})
    s.enqueue([entry(0, "x" * 200), entry(1), entry(2)])
    first, _second, _other = sequences_of(s.take())
    assert s.on_submit_resp(first, Status.ROK, "m1")
    assert s.pending_count == 0  # its record cannot go yet: the reply is not complete
    assert s.take() == []


def test_a_reply_longer_than_the_window_goes_a_part_at_a_time(sender):
    """Three parts, a window of one: each part goes once the one before is accepted (nothing else
    is at risk then); the reply completes, and only then is it recorded."""
    s, _ = sender(**{"smsc.window": 1})
    s.enqueue([entry(0, LONG), entry(1)])
    for _part in range(3):
        pdus = s.take()
        assert len(pdus) == 1 and s.take() == []
        assert s.pending_count == 0, "a reply is recorded whole"
        accept_all(s, pdus)
    assert s.pending_count == 1 and s.take() == [], "the other reply waits until the long one is recorded"
    acks, _writes, parts = s.take_pending()
    assert parts == 3
    s.recorded(acks)
    assert len(s.take()) == 1


def test_parts_forgotten_with_the_lease_stop_counting(sender):
    """A new generation drops the unsent parts of a reply whose first part was accepted: that part is
    the adopter's now, and a late resp of its part in flight counts nothing."""
    s, _ = sender(**{"smsc.window": 2})
    s.enqueue([entry(0, LONG)])
    first, second = sequences_of(s.take())
    assert s.on_submit_resp(first, Status.ROK, "m1") and s.room == 0
    assert s.drop_unsent() == 1
    assert s.on_submit_resp(second, Status.ROK, "m2")
    assert s.room == 2 and s.pending_count == 0
    s.enqueue([entry(1), entry(2)])
    assert len(s.take()) == 2


def test_tps_never_exceeds_the_limit_within_its_span(sender):
    s, clock = sender(**{"smsc.window": 100, "smsc.max_tps": 2})
    s.enqueue([entry(i) for i in range(5)])
    assert len(s.take()) == 2
    assert s.take() == [] and s.next_wakeup() == pytest.approx(1.0)
    clock.advance(0.999)
    assert s.take() == []
    clock.advance(0.001)
    assert len(s.take()) == 2


def test_fractional_tps_spaces_single_submits(sender):
    s, clock = sender(**{"smsc.window": 100, "smsc.max_tps": 0.5})
    s.enqueue([entry(i) for i in range(3)])
    assert len(s.take()) == 1 and s.next_wakeup() == pytest.approx(2.0)
    clock.advance(1.9)
    assert s.take() == []
    clock.advance(0.1)
    assert len(s.take()) == 1


@pytest.mark.parametrize("status,reason", [(Status.RTHROTTLED, "throttled"), (Status.RMSGQFUL, "queue_full"),
                                           (Status.RSYSERR, "system_error")])
def test_a_throttled_part_goes_again_after_the_backoff(unit_settings, status, reason):
    retries: list[str] = []
    s, clock = make_sender(unit_settings(**{"smsc.window": 10}), on_retry=retries.append)
    s.enqueue([entry(0)])
    [first] = s.take()
    assert s.on_submit_resp(sequences_of([first])[0], status, "")
    assert retries == [reason] and s.backlog == 1 and s.pending_count == 0
    assert s.take() == [] and s.next_wakeup() == pytest.approx(THROTTLE_BACKOFF_S)
    clock.advance(THROTTLE_BACKOFF_S)
    [again] = s.take()
    assert again[16:] == first[16:] and sequences_of([again]) != sequences_of([first])  # same part, new sequence


def test_a_throttled_part_does_not_hold_back_others(sender):
    s, clock = sender(**{"smsc.window": 10})
    s.enqueue([entry(0)])
    [p0] = s.take()
    s.on_submit_resp(sequences_of([p0])[0], Status.RTHROTTLED, "")
    s.enqueue([entry(1)])
    assert len(s.take()) == 1 and s.backlog == 1  # the other goes; the throttled one waits its turn
    assert s.next_wakeup() == pytest.approx(THROTTLE_BACKOFF_S)


def test_a_permanent_failure_is_recorded_once_and_the_rest_of_its_reply_dropped(unit_settings):
    failed: list[tuple[str, int]] = []
    s, _ = make_sender(unit_settings(**{"smsc.window": 2}), on_failed=lambda mt, st: failed.append((mt.entry_id, st)))
    s.enqueue([entry(0, LONG)])
    pdus = s.take()
    q1, q2 = sequences_of(pdus)
    assert s.on_submit_resp(q1, Status.RINVDSTADR, "")
    assert s.on_submit_resp(q2, Status.RINVDSTADR, "")  # its other part, in flight: moot
    assert failed == [("1000-0", Status.RINVDSTADR)] and s.failed_total == 1
    acks, writes, parts = s.take_pending()
    assert acks == [entry(0)[:2]] and parts == 1
    [w] = writes
    assert w.key.endswith("x1000-0}:rejected") and w.fields["state"] == "REJECTED" and w.fields["status"] == "0xb"
    assert s.backlog == 0 and s.take() == []  # the third part never goes


def test_accepted_replies_are_recorded_with_their_message_ids_when_receipts_are_asked(sender):
    s, _ = sender(**{"smsc.window": 10, "smsc.registered_delivery": 1})
    s.bound("smsc:2775/smsbot")
    s.enqueue([entry(0, LONG)])
    accept_all(s, s.take())
    assert s.has_writes and s.sent_total == 1
    _acks, writes, parts = s.take_pending()
    assert parts == 3 and [w.fields["part"] for w in writes] == ["1", "2", "3"]
    assert all(w.push and w.fields["bind"] == "smsc:2775/smsbot" and w.fields["state"] == "ENROUTE" for w in writes)


def test_the_same_entry_is_held_once(sender):
    s, _ = sender(**{"smsc.window": 10})
    s.enqueue([entry(0), entry(0)])
    s.enqueue([entry(0)])
    assert s.backlog == 1
    accept_all(s, s.take())
    acks, _w, _p = s.take_pending()
    s.recorded(acks)
    s.enqueue([entry(0)])  # a script that read it just before the XDEL hands it back: not sent again
    assert s.backlog == 0


def test_an_entry_that_cannot_be_rendered_is_recorded_not_sent(sender):
    s, _ = sender()
    bad = ("smsbot:{0}:outbox", "77-0", {"to": "13800000000", "from": "10086", "tpl": "no_such_template", "data": "{}"})
    s.enqueue([bad, entry(1)])
    assert s.backlog == 1 and s.failed_total == 1
    assert s.take_pending()[0] == [("smsbot:{0}:outbox", "77-0")]


def test_a_lost_lease_forgets_every_unsent_part_but_not_those_in_flight(sender):
    s, _ = sender(**{"smsc.window": 1})
    s.enqueue([entry(0), entry(1), entry(2)])
    [sent] = s.take()
    assert s.drop_unsent() == 2
    assert s.backlog == 0 and s.inflight == 1
    s.enqueue([entry(1)])  # adopted back through the queue: held again
    assert s.backlog == 1
    assert s.on_submit_resp(sequences_of([sent])[0], Status.ROK, "m")


def test_a_lost_bind_requeues_unanswered_parts_in_their_order_first(sender):
    s, clock = sender(**{"smsc.window": 10})
    s.enqueue([entry(0)])
    a = s.take()
    clock.advance(1)
    s.enqueue([entry(1)])
    b = s.take()
    s.enqueue([entry(2)])
    assert s.requeue_inflight() == 2
    assert s.inflight == 0 and s.backlog == 3
    assert not s.on_submit_resp(sequences_of(a)[0], Status.ROK, "late")  # the old sequence is nobody's now
    again = s.take()
    assert [p[16:] for p in again] == [a[0][16:], b[0][16:], again[2][16:]] and len(again) == 3


def test_a_lost_bind_does_not_resend_the_rest_of_a_refused_reply(sender):
    s, _ = sender(**{"smsc.window": 10})
    s.enqueue([entry(0, LONG)])
    q1, _q2, _q3 = sequences_of(s.take())
    s.on_submit_resp(q1, Status.RINVDSTADR, "")
    assert s.requeue_inflight() == 0 and s.backlog == 0


def test_overdue_submit_resps_and_the_age_of_records_follow_the_clock(sender):
    s, clock = sender(**{"smsc.window": 10})
    s.enqueue([entry(0), entry(1)])
    q0, q1 = sequences_of(s.take())
    clock.advance(5)
    assert s.expired(5) == [] and s.expired(4.9) == [q0, q1]
    s.on_submit_resp(q0, Status.ROK, "m")
    assert s.ack_age() == 0.0
    clock.advance(2)
    assert s.ack_age() == 2.0 and s.expired(6.9) == [q1]
    s.enqueue([entry(2)])
    [q2] = sequences_of(s.take())
    clock.advance(3)
    assert s.expired(2.9) == [q1, q2] and s.expired(5) == [q1], "oldest first: the look stops at q2"


def test_no_part_goes_while_the_lease_is_not_surely_held(sender):
    s, _ = sender()
    s.enqueue([entry(0)])
    assert s.take(may_send=False) == [] and s.backlog == 1
    assert len(s.take(may_send=True)) == 1
