"""`Delivery` while its instance is suspended (runtime control): once unbound, what the sender holds
is handed back (forgotten here, the old name's lease given up, a new name taken) unless handing it
over could send accepted parts twice. On fake round trips and a clock the test moves; the queue
itself (siblings claiming and adopting, nothing read while suspended) is tests/test_ctl_queue.py."""

from __future__ import annotations

import threading

import pytest

from smsbot.delivery import Delivery
from smsbot.messages import Status
from smsbot.outbox import OutboxSender
from smsbot.session import SequenceGenerator
from tests.helpers import Clock, ScriptedStore, entry, make_live, sequences_of

pytestmark = pytest.mark.unit
TWO_PARTS = "x" * 200  # a notice of two parts (160 GSM-7 characters a part)


@pytest.fixture
def suspendable(unit_settings):
    settings = unit_settings(**{"smsc.window": 4})
    store = ScriptedStore(settings)
    clock = Clock()
    sender = OutboxSender(make_live(settings), SequenceGenerator(), store.keys, clock=clock)
    suspended = threading.Event()
    d = Delivery(make_live(settings), store, sender, "bot-a", clock=clock, suspended=suspended)
    d._renew(clock())
    assert d.may_send(clock())
    return d, store, clock, suspended


def lease_deletes(store: ScriptedStore) -> list[str]:
    return [k for rt in store.roundtrips for k in store.deleted(rt) if ":lease:" in k]


def test_unbound_and_suspended_it_gives_back_everything_it_holds_and_its_name(suspendable):
    d, store, clock, suspended = suspendable
    d.sender.enqueue([entry(i) for i in range(1, 6)])
    in_flight = d.sender.take()  # the window's worth, unanswered when the link went
    assert len(in_flight) == 4 and d.sender.backlog == 1
    d._hand_over([entry(6, stream="smsbot:{0}:queue")])  # read by the worker, not yet taken by the loop
    before = d.identity

    d.alive(clock())
    assert not d.suspension_settled and d.consumer == "bot-a", "not suspended: nothing is handed back"

    suspended.set()
    d.alive(clock())
    assert d.suspension_settled
    assert d.sender.idle and d.sender.backlog == 0 and d.sender.inflight == 0
    assert d.sender.room == d.sender.window, "nothing of the old name's counts against the window"
    assert d.consumer == "bot-a.1" and d.identity.consumer == "bot-a.1" and d.identity.token != before.token
    assert not d.may_send(clock()), "the new name sends nothing before it holds a lease"
    assert sorted(lease_deletes(store)) == sorted(p + "bot-a" for p in d.lease_prefixes)
    for q in sequences_of(in_flight):  # a late answer (the link is gone: none comes) would be moot
        assert not d.sender.on_submit_resp(q, Status.ROK, f"m{q}")

    d.tick(clock())
    assert d.sender.backlog == 0, "what the worker had read went back with the old name"
    d.alive(clock())
    assert len(lease_deletes(store)) == len(d.lease_prefixes), "once per suspension"

    d._renew(clock())
    assert d.may_send(clock()) and {c[1] for c in store.roundtrips[-1].cmds if c[0] == "SET"} >= {
        p + "bot-a.1" for p in d.lease_prefixes}

    suspended.clear()
    d.alive(clock())
    assert not d.suspension_settled
    d.sender.enqueue([entry(7)])  # read again after the resume, under the new name
    assert len(d.sender.take(d.may_send(clock()))) == 1


def test_a_half_accepted_reply_is_kept_for_the_resume(suspendable):
    d, store, clock, suspended = suspendable
    d.sender.enqueue([entry(1, TWO_PARTS), entry(2)])
    parts = d.sender.take()
    assert len(parts) == 3
    assert d.sender.on_submit_resp(sequences_of(parts)[0], Status.ROK, "m1")  # part 1 of 2 accepted, the rest unanswered

    suspended.set()
    d.alive(clock())
    assert d.suspension_settled, "decided: kept (the answer to the suspend can say so)"
    assert d.consumer == "bot-a" and lease_deletes(store) == [], "its name and lease are kept"
    assert d.sender.inflight == len(parts) - 1
    assert d.may_send(clock())

    suspended.clear()
    d.alive(clock())
    assert d.sender.requeue_inflight() == len(parts) - 1  # the next bind
    resent = [p[16:] for p in d.sender.take()]  # bodies (the sequence numbers are new)
    assert resent == [p[16:] for p in parts[1:]], "only what was not accepted goes again: part 1 is not sent twice"


def test_an_accepted_reply_not_yet_recorded_is_kept(suspendable):
    d, store, clock, suspended = suspendable
    d.sender.enqueue([entry(1)])
    for q in sequences_of(d.sender.take()):
        assert d.sender.on_submit_resp(q, Status.ROK, f"m{q}")
    assert d.sender.pending_count  # its record's round trip failed: still to be written
    suspended.set()
    d.alive(clock())
    assert d.suspension_settled and d.consumer == "bot-a" and lease_deletes(store) == []


def test_a_failed_lease_release_still_gives_up_the_name(suspendable):
    d, store, clock, suspended = suspendable
    d.sender.enqueue([entry(1)])
    store.refuse = 1
    suspended.set()
    d.alive(clock())
    assert d.suspension_settled and d.consumer == "bot-a.1" and d.sender.backlog == 0
    assert lease_deletes(store) == [], "the old name's lease lapses by itself: nothing renews it"
