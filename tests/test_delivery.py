"""Delivery against a real Redis: leases, atomic claims and adoption, and the one-window bound on
what a crash can send twice. Each test names the defect it guards against (issue 11)."""

from __future__ import annotations

import threading
import time

from smsbot.delivery import MARKS_PRUNE_EVERY_S, MARKS_PRUNE_SLACK_S, _Due
from smsbot.keys import OUTBOX_GROUP
from smsbot.messages import Status
from smsbot.records import mark_value

from .deliveries import delivery_for, hold_lease
from .helpers import outbox_sender, sequences_of, template_entry, wait_until


def test_accepted_but_unrecorded_submits_hold_back_the_next_ones(make_settings):
    """Before: accepted replies were recorded every 50-250 ms whatever was sent meanwhile, so a kill
    -9 re-sent all of them. Now parts in flight + accepted-unrecorded never exceed the window."""
    s, _clock = outbox_sender(make_settings, **{"smsc.window": 4})
    s.enqueue([template_entry(i) for i in range(10)])
    first = s.take()
    assert len(first) == 4
    for q in sequences_of(first):
        s.on_submit_resp(q, Status.ROK, f"m{q}")
    assert s.take() == [], "4 accepted, none recorded: nothing more may go out"
    assert s.blocked_by_records
    acks, _writes, parts = s.take_pending()
    assert parts == 4 and acks, "help replies are two parts: two replies stand for the four submits"
    assert len(s.take()) == 4, "once recorded (written to Redis), the next window goes"
    s.restore_pending(acks, [], parts)  # that round trip failed: they count again
    assert s.room <= 0


def test_two_live_senders_claim_a_dead_ones_entries_once(make_settings):
    """Before: XCLAIM with min-idle 0 by every live instance: both could send the same entry."""
    settings = make_settings()
    dead = delivery_for(settings, "dead")
    store = dead.store
    queue = store.keys.queue(0)
    for i in range(300):
        store.redis.xadd(queue, {"to": f"1380000{i:04d}", "from": "10086", "lang": "zh-CN", "tpl": "help", "data": "{}", "mo": ""})
    hold_lease(dead)
    assert len(store.read_outbox("dead", 1000)) == 300  # the dead one read them, then died (no lease)
    live = [delivery_for(settings, f"live{i}") for i in range(2)]
    for d in live:
        hold_lease(d)
    got: list[list] = [[], []]
    start = threading.Barrier(2)

    def claim(i: int) -> None:
        start.wait()
        got[i] = live[i].claim_from_dead()

    assert live[0].claim_from_dead() == [], "the dead one's lease still holds: nothing may be claimed"
    for p in dead.lease_prefixes:
        store.redis.delete(p + "dead")
    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [e[1] for g in got for e in g]
    assert len(ids) == 300 and len(set(ids)) == 300, (len(ids), len(set(ids)))
    names = {c["name"].decode() for c in store.redis.xinfo_consumers(queue, OUTBOX_GROUP)}
    assert "dead" not in names, "the dead consumer is deleted once it holds nothing"


def test_adoption_reaches_a_dead_senders_reply_behind_a_long_live_backlog(make_settings):
    """Before: adoption scanned the first 500 entries from the stream's start every time; 600 entries
    of a live (throttled) sender in front hid a dead sender's reply for ever."""
    settings = make_settings(**{"delivery.orphan_age_seconds": 0})
    d = delivery_for(settings, "adopter")
    store = d.store
    outbox, queue = store.keys.outbox(0), store.keys.queue(0)
    base = {"to": "13800000001", "from": "10086", "lang": "zh-CN", "tpl": "help", "data": "{}", "mo": ""}
    for _ in range(600):
        store.redis.xadd(outbox, {**base, "own": "busy"})
    orphan = store.redis.xadd(outbox, {**base, "own": "gone"}).decode()
    for p in d.lease_prefixes:
        store.redis.set(p + "busy", "busy", ex=60)
    # older than the horizon (now - 0 s): adoption compares entry ids with the clock, in milliseconds
    assert wait_until(lambda: time.time() * 1000 > int(orphan.split("-")[0]), 1)
    moved = d.adopt_orphans() + d.adopt_orphans()
    assert moved == 1
    assert store.redis.xrange(outbox, orphan, orphan) == []
    adopted = store.redis.xrange(queue)
    assert len(adopted) == 1 and adopted[0][1][b"adopted"].decode() == orphan
    assert store.redis.xlen(outbox) == 600, "the live sender's entries stay its own"


def test_lease_is_renewed_while_the_smsc_is_unreachable(make_settings):
    """Before: the heartbeat beat only inside the serve loop; an instance waiting to rebind lost it
    and a sibling adopted its replies while it still held them in memory."""
    from smsbot.app import Bot

    settings = make_settings(**{"smsc.port": 1, "smsc.reconnect_initial": 2.0, "smsc.reconnect_max": 4.0,
                                "delivery.heartbeat_seconds": 0.3, "delivery.lease_seconds": 1.0})
    bot = Bot(settings).start()
    try:
        key = bot.store.keys.lease_prefix(0) + bot.transport.delivery.consumer
        assert wait_until(lambda: bot.store.redis.exists(key), 5)
        ttls: list[int] = []

        def renewed_three_times() -> bool:  # a renewal sets the lease's TTL back up
            ttls.append(bot.store.redis.pttl(key))
            assert ttls[-1] > 0, f"the lease lapsed while the bot was unbound: {ttls}"
            return sum(b > a for a, b in zip(ttls, ttls[1:])) >= 3

        assert wait_until(renewed_three_times, 10, interval=0.05), ttls
        assert not bot.transport.bound.is_set()
        assert bot.transport.delivery.may_send(time.monotonic())
    finally:
        bot.stop()


def test_a_lapsed_lease_drops_what_was_not_sent_and_takes_a_new_name(make_settings):
    """Redis out of reach longer than the lease (simulated by deleting the lease): the renewal finds
    it gone, so the sender forgets unsent entries (siblings may be sending them) and becomes a new
    consumer; the old name's entries come back through adoption like any dead sender's."""
    settings = make_settings(**{"delivery.heartbeat_seconds": 0.2, "delivery.lease_seconds": 1.0})
    d = delivery_for(settings, "lapsing")
    d.start()
    try:
        assert wait_until(lambda: d.may_send(time.monotonic()), 5)
        d.sender.enqueue([template_entry(1)])
        d.tick(time.monotonic())
        assert d.sender.backlog == 2  # the two parts of a help reply
        for p in d.lease_prefixes:
            d.store.redis.delete(p + "lapsing")
        assert wait_until(lambda: d.generation == 1, 5)
        assert d.consumer == "lapsing.1"
        before = d.identity
        d.tick(time.monotonic())
        assert d.sender.backlog == 0 and d.identity.consumer == "lapsing.1"
        assert d.identity.token != before.token, "guards of the old name now mark possible redeliveries"
        assert wait_until(lambda: d.may_send(time.monotonic()), 5), "the new name holds a lease of its own"
    finally:
        d.stop()


def test_after_a_failed_round_trip_nothing_is_sent_until_the_lease_is_confirmed(make_settings):
    """A restarted Redis may have lost the lease before its time (its last writes were not on disk),
    and a sibling may adopt our entries at once: after a failed round trip the sender stops until a
    renewal (made at once) shows the lease is still its own, or takes a new name if it is not."""
    settings = make_settings(**{"delivery.heartbeat_seconds": 5.0, "delivery.lease_seconds": 30.0})
    d = delivery_for(settings, "suspect")
    d.start()
    try:
        assert wait_until(lambda: d.may_send(time.monotonic()), 5)
        d.suspect()
        assert not d.may_send(time.monotonic())
        assert wait_until(lambda: d.may_send(time.monotonic()), 2), "renewed at once, not after 5 s"
        assert d.generation == 0
        for p in d.lease_prefixes:  # as after a restart that lost the lease
            d.store.redis.delete(p + "suspect")
        d.suspect()
        assert wait_until(lambda: d.generation == 1, 2)
    finally:
        d.stop()


def test_a_reply_handed_back_just_after_it_was_recorded_is_not_sent_again(make_settings):
    """Two round trips race on two connections: a redelivered MO's script reads its reply from the
    outbox just before another round trip's XDEL of it runs, and its answer arrives after the
    record's. The sender has forgotten the entry by then; it must not send it again."""
    s, _clock = outbox_sender(make_settings)
    s.enqueue([template_entry(1)])
    for q in sequences_of(s.take()):
        s.on_submit_resp(q, Status.ROK, f"m{q}")
    acks, _writes, _parts = s.take_pending()
    s.recorded(acks)
    s.enqueue([template_entry(1)])  # the handed-back copy
    assert s.backlog == 0 and s.take() == []


def test_the_worker_prunes_dead_sessions_watermarks_at_start_and_every_ten_minutes(make_settings):
    """A sender that died never deletes its sessions' watermarks (`Keys.marks`): the worker forgets
    those written before a guard's whole life ago, on its first turn and every MARKS_PRUNE_EVERY_S."""
    mono, wall = [1000.0], [1_800_000_000.0]
    settings = make_settings(**{"dispatch.redelivery_guard_seconds": 600})
    d = delivery_for(settings, "pruner", clock=lambda: mono[0], wall=lambda: wall[0])
    r, marks = d.store.redis, d.store.keys.marks(0)

    def stale() -> str:
        return mark_value(3, int(wall[0] * 1000) - (600 + MARKS_PRUNE_SLACK_S) * 1000 - 1)

    def turn(seconds: float) -> None:  # the worker's clocks move on, the loop lives, the lease is renewed
        mono[0] += seconds
        wall[0] += seconds
        d.tick(mono[0])
        d._work(due)

    r.hset(marks, mapping={"dead/1": stale(), "alive/1": mark_value(9, int(wall[0] * 1000))})
    due = _Due()
    turn(0)
    assert r.hkeys(marks) == [b"alive/1"]
    r.hset(marks, "dead/2", stale())
    turn(MARKS_PRUNE_EVERY_S - 1)
    assert r.hexists(marks, "dead/2")  # not looked for again yet
    turn(2)
    assert not r.hexists(marks, "dead/2") and r.hexists(marks, "alive/1")  # written 601 s ago: a guard may live on
