"""Records of sent replies without XDEL (`smsbot.outbox`): the MINID each MO round trip's XADDs
trim the sender's own stream to, what holds it back (an older entry not accepted, a round trip in
flight or whose answer was lost), and the explicit record that remains as the fallback. The stream
is a model here (a set of ids the test trims as Redis would); the end-to-end proofs are in
tests/test_outbox_trims.py."""

from __future__ import annotations

import random

import pytest

from smsbot.keys import Keys
from smsbot.messages import Status
from smsbot.outbox import THROTTLE_BACKOFF_S, OutboxSender, parse_id
from smsbot.session import SequenceGenerator
from smsbot.store import Trim
from tests.helpers import Clock, destination_of, entry, make_live, sequences_of

pytestmark = pytest.mark.unit
OWN = "smsbot:{0}:outbox:bot-1"


@pytest.fixture
def sender(unit_settings):
    def make(window: int = 5) -> tuple[OutboxSender, Clock]:
        settings = unit_settings(**{"smsc.window": window})
        clock = Clock()
        s = OutboxSender(make_live(settings), SequenceGenerator(), Keys(settings.redis.key_prefix, settings.redis.shards),
                         clock=clock)
        s.own_streams([OWN])
        return s, clock
    return make


def mine(i: int) -> tuple[str, str, dict[str, str]]:
    """Entry i of the sender's own stream (id 1000+i-0: later entries have higher ids)."""
    return entry(i, "hi", stream=OWN)


def accept(s: OutboxSender, pdus: list[bytes], status: int = Status.ROK) -> None:
    for q in sequences_of(pdus):
        assert s.on_submit_resp(q, status, f"m{q}")


def test_the_minid_is_the_oldest_entry_not_accepted_then_past_the_newest(sender):
    s, _ = sender()
    s.enqueue([mine(0), mine(1), mine(2)])
    pdus = s.take()
    accept(s, pdus[1:])  # 1 and 2 accepted, 0 still in flight
    t = s.begin_trims()
    assert t.minids == {OWN: "1000-0"}, "entry 0 is still needed: nothing below it goes"
    s.end_trims(t, {OWN})
    assert s.room == 5 - 1 - 2, "1 and 2 are above the MINID: not recorded"
    accept(s, pdus[:1])
    t = s.begin_trims()
    assert t.minids == {OWN: "1002-1"}, "all accepted: just past the newest"
    s.end_trims(t, {OWN})
    assert s.room == 5 and s.pending_count == 0 and s.ack_age() == 0.0


def test_accepted_entries_count_until_a_round_trip_that_trimmed_them_is_answered(sender):
    s, _ = sender(window=2)
    s.enqueue([mine(0), mine(1), mine(2)])
    accept(s, s.take())
    t = s.begin_trims()
    assert s.room == 0 and s.take() == [], "the MINID is on its way, not answered"
    assert not s.blocked_by_records, "a round trip in flight trims them: no explicit record"
    assert s.pending_count == 0, "nothing for an explicit record"
    s.end_trims(t, set())  # its MOs wrote no reply to this stream: nothing was trimmed
    assert s.room == 0 and s.blocked_by_records, "no MO round trip left to trim them: record them now"
    acks, _w, parts = s.take_pending()
    assert acks == [Trim(OWN, "1002-0"), (OWN, "1000-0"), (OWN, "1001-0")] and parts == 2, "up to entry 2, not sent yet"
    s.recorded(acks)
    assert s.room == 2 and len(s.take()) == 1


def test_a_round_trip_in_flight_holds_the_minid_below_what_it_may_add(sender):
    """Two round trips travel on different connections: what the first adds is unknown until its
    answer, and may be below what the second's answer brings; no MINID may pass it meanwhile."""
    s, _ = sender()
    s.enqueue([mine(0)])
    accept(s, s.take())
    first = s.begin_trims()  # sent when entry 0 was the newest known
    s.enqueue([mine(1), mine(2)])  # a second round trip's answer (Redis ran it after the first)
    accept(s, s.take())
    second = s.begin_trims()
    assert second.minids == {OWN: "1000-1"}, "not past 1000-0 while the first is unanswered"
    s.end_trims(first, {OWN})
    s.end_trims(second, {OWN})
    assert s.room == 5 - 2, "entry 0 recorded; 1 and 2 wait for a later MINID"
    third = s.begin_trims()
    assert third.minids == {OWN: "1002-1"}


def test_a_lost_answer_holds_the_minid_until_the_senders_entries_are_read_back(sender):
    s, clock = sender()
    lost = s.begin_trims()
    s.enqueue([mine(0)])
    accept(s, s.take())
    s.end_trims(lost, None)  # the round trip failed: its MO steps may have written replies unseen
    s.lost_tag(1)
    t = s.begin_trims()
    assert t.minids == {OWN: "0-1"}, "nothing it may have written is trimmed"
    s.end_trims(t, {OWN})
    assert s.room == 4
    clock.advance(1.0)
    assert s.ack_age() == pytest.approx(1.0) and s.pending_count == 1, "the fallback records it once due"
    s.lost_found(0)
    t = s.begin_trims()
    assert t.minids == {OWN: "0-1"}, "an older read covers no later suspicion"
    s.end_trims(t, set())
    s.enqueue([mine(5)])  # the read found a reply whose answer was lost
    s.lost_found(1)
    assert s.begin_trims().minids == {OWN: "1005-0"}


def test_a_throttled_entry_holds_the_minid_back_and_the_rest_is_recorded_explicitly(sender):
    s, clock = sender(window=3)
    s.enqueue([mine(i) for i in range(4)])
    pdus = s.take()
    accept(s, pdus[:1], Status.RTHROTTLED)
    accept(s, pdus[1:])
    t = s.begin_trims()
    assert t.minids == {OWN: "1000-0"}
    s.end_trims(t, {OWN})
    assert s.room == 1 and len(s.take()) == 1 and s.room == 0, "entry 3 goes; entry 0 waits for its backoff"
    s.begin_trims()  # an MO round trip in flight, but its MINID cannot pass the throttled entry
    assert s.blocked_by_records
    acks, _w, parts = s.take_pending()
    assert acks == [(OWN, "1001-0"), (OWN, "1002-0")] and parts == 2, "XDEL of their ids: a trim would take entry 0"
    assert s.room == 2


def test_idle_records_go_as_one_trim_after_the_flush_age(sender):
    s, clock = sender()
    s.enqueue([mine(0), mine(1)])
    accept(s, s.take())
    assert s.pending_count == 2 and s.ack_age() == 0.0
    clock.advance(0.05)
    assert s.ack_age() == pytest.approx(0.05)
    acks, _w, parts = s.take_pending()
    assert acks[0] == Trim(OWN, "1001-1") and parts == 2
    s.restore_pending(acks, [], parts)  # that round trip failed
    assert s.room == 3 and s.pending_count == 2
    acks, _w, parts = s.take_pending()
    s.recorded(acks)
    assert s.room == 5 and s.pending_count == 0


def test_a_new_name_records_what_its_old_streams_held_explicitly(sender):
    s, _ = sender()
    s.enqueue([mine(0)])
    accept(s, s.take())
    s.own_streams(["smsbot:{0}:outbox:bot-1.1"])
    acks, _w, parts = s.take_pending()
    assert acks == [(OWN, "1000-0")] and parts == 1


@pytest.mark.parametrize("seed", range(12))
def test_no_needed_entry_is_ever_trimmed_and_a_crash_resends_at_most_one_window(unit_settings, seed):
    """A seeded random walk against a model of the sender's stream: MO round trips start (taking
    the MINIDs), Redis runs them in any order (trimming to their MINID when they add replies), their
    answers come back or are lost (then read back later), explicit records go, the SMSC accepts or
    throttles. Never is an entry trimmed before the SMSC accepted it, and the parts a crash would
    send again (in flight, or accepted and still in Redis) never exceed the window."""
    rnd = random.Random(seed)
    window = rnd.choice([1, 3, 5])
    settings = unit_settings(**{"smsc.window": window})
    clock = Clock()
    s = OutboxSender(make_live(settings), SequenceGenerator(), Keys("smsbot", 16), clock=clock)
    s.own_streams([OWN])
    stream: set[str] = set()  # the ids in Redis
    made = [0]
    accepted_ids: set[str] = set()
    inflight: dict[int, str] = {}
    trips: list[dict] = []  # MO round trips sent: ticket, whether Redis ran them, what they added
    unseen: list[str] = []  # entries of lost answers, not read back yet
    records: list[tuple] = []
    suspicions = [0]

    def run(trip: dict) -> None:
        if trip["adds"]:
            mark = parse_id(trip["ticket"].minids[OWN])
            stream.difference_update({i for i in stream if parse_id(i) < mark})
            for _ in range(trip["adds"]):
                made[0] += 1
                trip["new"].append(f"{1000 + made[0]}-0")
            stream.update(trip["new"])
        trip["ran"] = True

    for step_no in range(400):
        step = rnd.choice(["mo", "mo", "redis", "answer", "answer", "send", "send", "resp", "resp", "resp",
                           "record", "record_done", "read_back", "tick"])
        if step == "mo":
            trips.append({"ticket": s.begin_trims(), "ran": False, "adds": rnd.choice([0, 1, 1, 2]), "new": []})
        elif step == "redis" and trips:
            trip = rnd.choice([t for t in trips if not t["ran"]] or trips)
            if not trip["ran"]:
                run(trip)
        elif step == "answer" and trips:
            trip = trips.pop(0)
            if not trip["ran"]:
                run(trip)
            if rnd.random() < 0.85:
                s.end_trims(trip["ticket"], {OWN} if trip["new"] else set())
                s.enqueue([mine(int(i.split("-")[0]) - 1000) for i in trip["new"]])
            else:
                s.end_trims(trip["ticket"], None)
                suspicions[0] += 1
                s.lost_tag(suspicions[0])
                unseen.extend(trip["new"])
        elif step == "read_back" and not any(not t["ran"] for t in trips):
            s.enqueue([mine(int(i.split("-")[0]) - 1000) for i in sorted(stream)])
            unseen.clear()
            s.lost_found(suspicions[0])
        elif step == "send":
            for part in s.take():
                inflight[sequences_of([part])[0]] = f"{1000 + int(destination_of(part)[-4:])}-0"
            in_redis = len(accepted_ids & stream)
            assert len(inflight) + in_redis <= window, (step_no, inflight, in_redis)
        elif step == "resp" and inflight:
            q = rnd.choice(sorted(inflight))
            entry_id = inflight.pop(q)
            status = rnd.choice([Status.ROK, Status.ROK, Status.ROK, Status.RTHROTTLED])
            assert s.on_submit_resp(q, status, "m")
            if status == Status.ROK:
                accepted_ids.add(entry_id)
        elif step == "record" and s.pending_count:
            acks, writes, parts = s.take_pending()  # written: Redis runs it even if the bot dies next
            records.append(acks)
            trims = {r.stream: parse_id(r.minid) for r in acks if isinstance(r, Trim)}
            for r in acks:
                if not isinstance(r, Trim) and (r[0] not in trims or parse_id(r[1]) >= trims[r[0]]):
                    stream.discard(r[1])
            if OWN in trims:
                stream.difference_update({i for i in stream if parse_id(i) < trims[OWN]})
        elif step == "record_done" and records:
            s.recorded(records.pop(0))
        elif step == "tick":
            clock.advance(THROTTLE_BACKOFF_S / 2)
        created = {f"{1000 + n}-0" for n in range(1, made[0] + 1)}
        lost = created - stream
        assert lost <= accepted_ids, f"step {step_no}: trimmed before the SMSC accepted it: {sorted(lost - accepted_ids)}"
    assert len(accepted_ids) > window

