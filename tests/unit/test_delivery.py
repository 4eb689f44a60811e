"""`smsbot.delivery.Delivery`'s Python side on a clock the test moves and fake round trips: the
lease renewal and the fence, suspicion, a new generation (unsent parts dropped, the identity
renamed), the hand-over of what the worker read, and the identity the pipeline prepares for.
Adoption and claims run in Redis (adopt.lua, claim.lua): tests/test_delivery.py, end to end.

The worker thread's steps are driven one at a time (`_renew`, `_hand_over`): the thread itself
only schedules them and waits between them."""

from __future__ import annotations

import pytest
import redis

from smsbot.delivery import Delivery
from smsbot.dispatch import Dispatcher
from smsbot.messages import Status
from smsbot.outbox import OutboxSender
from smsbot.pipeline import Pipeline
from smsbot.session import ReplyTo, SequenceGenerator
from tests.helpers import Clock, ScriptedStore, destination_of, entry, error_reply, inbound, make_link, make_live, sequences_of

pytestmark = pytest.mark.unit
LEASE, BEAT = 15.0, 2.0


@pytest.fixture
def delivery(unit_settings):
    def make(**overrides) -> tuple[Delivery, ScriptedStore, Clock]:
        settings = unit_settings(**{"delivery.lease_seconds": LEASE, "delivery.heartbeat_seconds": BEAT,
                                    "delivery.ack_flush_seconds": 0.5, **overrides})
        store = ScriptedStore(settings)
        clock = Clock()
        live = make_live(settings)
        sender = OutboxSender(live, SequenceGenerator(), store.keys, clock=clock)
        return Delivery(live, store, sender, "bot-a", clock=clock), store, clock
    return make


def lease_sets(store: ScriptedStore) -> list[tuple]:
    return [c for c in store.roundtrips[-1].cmds if c[0] == "SET" and ":lease:" in c[1]]


def test_nothing_is_sent_before_the_lease_is_taken(delivery):
    d, _store, clock = delivery()
    assert not d.may_send(clock())


def test_the_fence_ends_one_heartbeat_before_the_lease(delivery):
    d, store, clock = delivery()
    t0 = clock()
    d._renew(t0)
    assert d.may_send(t0) and d.may_send(t0 + LEASE - BEAT - 0.001)
    assert not d.may_send(t0 + LEASE - BEAT)
    sets = lease_sets(store)
    assert len(sets) == store.keys.shards and all(c[2] == "bot-a" and c[3:] == ("PX", 15000, "NX") for c in sets)


def test_the_fence_is_measured_from_before_the_renewal_was_sent(delivery):
    d, store, clock = delivery()
    t0 = clock()
    store.on_start = lambda _cmds: clock.advance(4)  # Redis takes its time to answer
    d._renew(t0)
    assert not d.may_send(t0 + LEASE - BEAT)


def test_renewals_extend_a_lease_they_hold(delivery):
    d, store, clock = delivery()
    d._renew(clock())
    t1 = clock.advance(BEAT)
    d._renew(t1)
    assert {c[-1] for c in lease_sets(store)} == {"XX"}
    assert d.may_send(t1 + LEASE - BEAT - 0.001)


def test_a_suspicion_stops_sending_at_once_until_a_renewal_confirms_the_lease(delivery):
    d, _store, clock = delivery()
    d._renew(clock())
    d.suspect()
    assert not d.may_send(clock()) and d.suspicions == 1
    d._renew(clock.advance(0.1))
    assert d.may_send(clock())


def test_a_renewal_that_fails_does_not_extend_the_fence(delivery):
    d, store, clock = delivery()
    t0 = clock()
    d._renew(t0)
    store.command_errors["SET"] = error_reply("READONLY You can't write against a read only replica.")
    with pytest.raises(redis.ResponseError):
        d._renew(clock.advance(BEAT))
    assert not d.may_send(t0 + LEASE - BEAT)


def test_a_stuck_loop_stops_renewing_and_the_fence_runs_out(delivery):
    d, store, clock = delivery(**{"delivery.stuck_seconds": 30})
    d._renew(clock())
    d.tick(clock())
    trips = len(store.roundtrips)
    t = clock.advance(31)
    d._renew(t)
    assert len(store.roundtrips) == trips and not d.may_send(t)
    d.tick(t)  # the loop turns again
    d._renew(t)
    assert len(store.roundtrips) == trips + 1 and d.may_send(t)


def test_a_lapsed_lease_makes_a_new_sender_that_forgets_its_unsent_parts(delivery):
    d, store, clock = delivery(**{"smsc.window": 1})
    d._renew(clock())
    d.sender.enqueue([entry(0), entry(1), entry(2)])
    [in_flight] = d.sender.take()
    store.lease_gone = True  # Redis was out of reach longer than the lease: siblings may adopt our entries
    d._renew(clock.advance(BEAT))
    assert d.consumer == "bot-a.1" and d.generation == 1 and not d.may_send(clock())
    assert d.identity.consumer == "bot-a"  # the loop's view changes on its own thread, at its next turn
    d.tick(clock())
    assert d.sender.backlog == 0  # adopted back through the queue, by a sibling or by us under the new name
    assert d.identity.consumer == "bot-a.1" and d.identity.token == "bot-a.1/2"
    assert d.sender.on_submit_resp(sequences_of([in_flight])[0], Status.ROK, "m")  # a part in flight still counts
    store.lease_gone = False
    d._renew(clock.advance(0.1))
    sets = lease_sets(store)
    assert all(c[1].endswith(":lease:bot-a.1") and c[-1] == "NX" for c in sets) and d.may_send(clock())


def test_the_loop_takes_what_the_worker_read_in_order(delivery):
    d, _store, clock = delivery()
    d._hand_over([entry(0), entry(1)])
    d._hand_over([])
    d._hand_over([entry(2)])
    assert d.sender.backlog == 0  # nothing crosses threads until the loop's turn
    d.tick(clock())
    d._renew(clock())
    sent = d.sender.take(d.may_send(clock()))
    assert [destination_of(p) for p in sent] == ["8613800000000", "8613800000001", "8613800000002"]


def test_a_new_session_is_a_new_token_for_the_same_consumer(delivery):
    d, _store, _clock = delivery()
    assert d.identity.token == "bot-a/1"
    d.new_session()
    assert (d.identity.consumer, d.identity.token) == ("bot-a", "bot-a/2")


def test_records_are_due_when_they_block_submits_or_by_age(delivery):
    d, _store, clock = delivery(**{"smsc.window": 1})
    assert not d.acks_due(clock()) and d.wakeup_in(clock()) is None
    d.sender.enqueue([entry(0)])
    [p] = d.sender.take()
    d.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m")
    assert not d.acks_due(clock()) and d.wakeup_in(clock()) == pytest.approx(0.5)
    clock.advance(0.5)
    assert d.acks_due(clock()) and d.wakeup_in(clock()) == 0.0
    d.sender.take_pending()
    d.sender.enqueue([entry(1), entry(2)])
    [p] = d.sender.take()
    d.sender.on_submit_resp(sequences_of([p])[0], Status.ROK, "m")
    assert d.acks_due(clock())  # young, but it holds the next submit back


def test_stopping_gives_the_lease_up(delivery):
    d, store, clock = delivery()
    d._renew(clock())
    d.stop()
    [rt] = store.roundtrips[-1:]
    deleted = [c[1] for c in rt.cmds if c[0] == "DEL"]
    assert len(deleted) == store.keys.shards + 1 and all(k.endswith(":lease:bot-a") for k in deleted[:-1])
    assert not d.may_send(clock())


def test_the_pipeline_prepares_for_the_identity_delivery_holds_and_a_failure_fences_the_sender(delivery):
    """Delivery as the pipeline's `Sessions`: a lost round trip makes a new session (new token in the
    next MO call) and a suspicion (no submit until a renewal)."""
    d, store, clock = delivery()
    live, sender = d.live, d.sender
    pipeline = Pipeline(live, store, Dispatcher(live, store, clock=lambda: 1.7e9 + clock()), sender, d)
    link = make_link(now=clock())
    d._renew(clock())
    store.lose = 1
    pipeline.on_mo(inbound(1), ReplyTo(link, 1))
    pipeline.start_batches()
    store.roundtrips[-1].arrive()
    pipeline.poll(store.roundtrips[-1:])
    assert not d.may_send(clock()) and d.suspicions == 1
    sender.enqueue([entry(0)])
    assert sender.take(d.may_send(clock())) == []
    pipeline.on_mo(inbound(2, "13900139000"), ReplyTo(link, 2))
    pipeline.start_batches()
    [call] = store.mo_calls(store.roundtrips[-1])
    # a single Redis: the lease of shard 0, whose outbox stream takes every subscriber's replies
    assert call.argv.token == "bot-a/2" and call.keys.lease == store.keys.lease_prefix(0) + "bot-a"
    d._renew(clock.advance(0.01))
    assert len(sender.take(d.may_send(clock()))) == 1
