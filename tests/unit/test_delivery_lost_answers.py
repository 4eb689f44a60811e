"""A failed round trip whose MO scripts ran: their replies sit in the outbox marked as this sender's
own, and their answer never reached the loop (chaos scenario j: every Redis node stopped and started
again left 4 of 7,906 MOs unanswered). After the suspicion, once a renewal confirms the lease, the
worker reads its own entries back and the loop sends those it does not hold -- after
`delivery.orphan_age_seconds`, so that a redelivery reaching this sender first hands its reply back
(one reaching it after the reply went out would send a copy).

Redis is a fake here (`ScriptedStore` answering XRANGE from the streams the test fills); the worker's
steps are driven one at a time, as in tests/unit/test_delivery.py."""

from __future__ import annotations

import pytest

from smsbot import delivery as delivery_mod
from smsbot.delivery import Delivery
from smsbot.messages import Status
from smsbot.outbox import OutboxSender
from smsbot.session import SequenceGenerator
from tests.helpers import Clock, ScriptedStore, destination_of, entry, make_live, sequences_of

pytestmark = pytest.mark.unit


class OutboxStore(ScriptedStore):
    """XRANGE stream start end COUNT n answered from `streams` (stream -> [(id, fields)], in id order)."""

    def __init__(self, settings):
        super().__init__(settings)
        self.streams: dict[str, list[tuple[str, dict[str, str]]]] = {}

    def _answer(self, cmd):
        if cmd[0] != "XRANGE":
            return super()._answer(cmd)
        stream, start, end, _count, n = cmd[1:]
        after = (lambda i: _id(i) > _id(start[1:])) if start.startswith("(") else (lambda i: True)
        page = [e for e in self.streams.get(stream, []) if after(e[0]) and _id(e[0]) <= _id(end)][:n]
        return [[i.encode(), [x.encode() for kv in f.items() for x in kv]] for i, f in page]


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


ORPHAN_AGE = 5.0


@pytest.fixture
def world(unit_settings):
    settings = unit_settings(**{"delivery.lease_seconds": 15.0, "delivery.heartbeat_seconds": 2.0,
                                "delivery.orphan_age_seconds": ORPHAN_AGE})
    store = OutboxStore(settings)
    clock = Clock()  # the wall clock too: entry ids are its milliseconds
    live = make_live(settings)
    sender = OutboxSender(live, SequenceGenerator(), store.keys, clock=clock)
    return Delivery(live, store, sender, "bot-a", clock=clock, wall=clock), store, clock


def owned(i: int, owner: str) -> tuple[str, dict[str, str]]:
    _stream, entry_id, fields = entry(i)
    return entry_id, {**fields, "t": "1", "own": owner}


def test_after_a_failed_round_trip_our_replies_whose_answer_was_lost_are_sent(world):
    d, store, clock = world
    d._renew(clock())
    d.sender.enqueue([entry(0, stream=store.keys.outbox(0))])  # a reply the loop holds (its round trip was answered)
    store.streams[store.keys.outbox(0)] = [owned(0, "bot-a"), owned(1, "bot-a"), owned(2, "bot-b")]
    store.streams[store.keys.outbox(3)] = [owned(3, "bot-a")]
    d.suspect()  # the round trip that ran MO 1's and MO 3's scripts failed before its answer was read
    d._renew(clock.advance(0.1))
    trips = len(store.roundtrips)
    d._take_back_own()
    assert len(store.roundtrips) == trips, "first the redeliveries (one reaching us hands the reply back)"
    store.streams[store.keys.outbox(0)].append((f"{int(clock.advance(ORPHAN_AGE) * 1000)}-0", owned(5, "bot-a")[1]))
    d._take_back_own()  # not the entry just written: its MO's redelivery may yet come here
    d.tick(clock())
    sent = d.sender.take(d.may_send(clock()))
    # ours, each once (entry 0 was held already); bot-b's is bot-b's to send
    assert sorted(destination_of(p) for p in sent) == ["8613800000000", "8613800000001", "8613800000003"]
    trips = len(store.roundtrips)
    d._take_back_own()  # nothing suspected since: no second read
    assert len(store.roundtrips) == trips


def test_the_read_pages_through_a_long_outbox_and_skips_what_was_recorded_meanwhile(world, monkeypatch):
    monkeypatch.setattr(delivery_mod, "OWN_PAGE", 2)
    d, store, clock = world
    d._renew(clock())
    store.streams[store.keys.outbox(0)] = [owned(i, "bot-a") for i in range(5)]
    d.sender.enqueue([entry(4, stream=store.keys.outbox(0))])
    [pdu] = d.sender.take(d.may_send(clock()))
    assert d.sender.on_submit_resp(sequences_of([pdu])[0], Status.ROK, "m4")
    acks, _writes, _parts = d.sender.take_pending()
    d.suspect()
    d._renew(clock.advance(ORPHAN_AGE))
    d._take_back_own()  # read entry 4 just before its record (XDEL) was answered
    d.sender.recorded(acks)
    d.tick(clock())
    sent = d.sender.take(d.may_send(clock()))
    assert sorted(destination_of(p) for p in sent) == [f"861380000000{i}" for i in range(4)]
    pages = [len(rt.cmds) for rt in store.roundtrips if rt.cmds[0][0] == "XRANGE"]
    assert pages == [store.keys.shards, 1, 1]  # every stream's first page in one round trip, then shard 0's


def test_a_failed_read_is_tried_again_at_the_next_turn(world):
    d, store, clock = world
    d._renew(clock())
    store.streams[store.keys.outbox(0)] = [owned(1, "bot-a")]
    d.suspect()
    d._renew(clock.advance(ORPHAN_AGE))
    store.refuse = 1
    with pytest.raises(Exception):
        d._take_back_own()
    d._take_back_own()
    d.tick(clock())
    assert [destination_of(p) for p in d.sender.take(d.may_send(clock()))] == ["8613800000001"]
