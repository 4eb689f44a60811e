"""`smsbot.dispatch.Dispatcher` on a `ScriptedStore`: what prepare builds for the sender's identity,
the order of a round trip's commands, and how replies (or their absence) become statuses."""

from __future__ import annotations

import pytest
import redis

from smsbot.dispatch import Dispatcher
from smsbot.identity import SenderIdentity
from smsbot.messages import Status
from smsbot.store import KeyWrite
from tests.helpers import Clock, ScriptedStore, error_reply, inbound, make_live

pytestmark = pytest.mark.unit
NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


@pytest.fixture
def setup(unit_settings):
    def make(**overrides) -> tuple[Dispatcher, ScriptedStore, SenderIdentity]:
        settings = unit_settings(**overrides)
        store = ScriptedStore(settings)
        me = SenderIdentity("bot-1", tuple(store.keys.lease_prefix(n) for n in range(store.keys.shards)), session=4)
        return Dispatcher(make_live(settings), store, clock=Clock(NOW)), store, me
    return make


def run(d: Dispatcher, batch, **start):
    d.start(batch, **start)
    if batch.roundtrip is not None and batch.error is None:
        batch.raw = batch.roundtrip.wait()
    return d.finish(batch)


def test_each_mo_becomes_one_script_call_for_the_senders_identity(setup):
    d, store, me = setup()
    batch = d.prepare([inbound(1, "13800138000", "0000"), inbound(2, "13900139000", "TD VIDEO")], me)
    d.start(batch)
    [a, b] = store.mo_calls(batch.roundtrip)
    assert (a.argv.handler, b.argv.handler) == ("subscriptions.menu", "reply")
    for call, msisdn in ((a, "13800138000"), (b, "13900139000")):
        assert call.argv.consumer == "bot-1" and call.argv.token == "bot-1/4"
        # a single Redis: every subscriber's replies go to shard 0's outbox, under the lease adoption checks there
        assert call.keys.lease == me.lease_key(0) and call.argv.now == int(NOW * 1000)
        assert call.keys.outbox == store.keys.outbox(0) and call.argv.guard_ms == 600_000
    assert [oc.guard for oc in batch.outcomes] == [a.keys.old_guard, b.keys.old_guard]
    assert batch.roundtrip.arrived is False  # prepared and sent; nothing answered yet


def test_the_guard_names_the_mo_by_its_fingerprint(setup):
    d, _store, me = setup()
    b = d.prepare([inbound(1, text="0000", umr=5), inbound(2, text="0000", umr=5), inbound(3, text="0000", umr=6),
                   inbound(4, text="0001", umr=5), inbound(5, "13900139000", text="0000", umr=5)], me)
    g = [oc.guard for oc in b.outcomes]
    assert g[0] == g[1]  # the same MO again (a redelivery, or the same text repeated)
    assert len({g[0], g[2], g[3], g[4]}) == 4  # another reference, another text, another subscriber


def test_without_guards_no_guard_is_left(setup):
    d, store, me = setup(**{"dispatch.redelivery_guard_seconds": 0})
    batch = d.prepare([inbound(1)], me)
    d.start(batch)
    [call] = store.mo_calls(batch.roundtrip)
    assert call.argv.guard_ms == 0 and batch.outcomes[0].guard == ""
    assert call.keys.old_guard == store.keys.subscriber("13800138000").none and call.argv.guard_fp == ""  # the script sets none


def test_a_reload_applies_from_the_next_batch(setup, unit_settings):
    """The settings and router are read once per batch: the next batch has a reload's guards and short codes."""
    d, store, me = setup()
    first = d.prepare([inbound(1), inbound(2, short_code="10010")], me)
    assert first.outcomes[0].guard and first.outcomes[1].outcome == "unknown_short_code"
    new = unit_settings(**{"dispatch.redelivery_guard_seconds": 0, "short_codes": [
        {"code": "10086", "language": "zh-CN", "commands": ["subscriptions", "help"]},
        {"code": "10010", "language": "en", "commands": ["help"]}]})
    d.live.swap(new, make_live(new).router)
    second = d.prepare([inbound(3), inbound(4, short_code="10010")], me)
    d.start(second)
    calls = store.mo_calls(second.roundtrip)
    assert [oc.guard for oc in second.outcomes] == ["", ""] and [c.argv.guard_ms for c in calls] == [0, 0]
    assert [c.argv.lang for c in calls] == ["zh-CN", "en"]


def test_an_unserved_short_code_is_acknowledged_without_a_round_trip(setup):
    d, store, me = setup()
    batch = d.prepare([inbound(1, short_code="99999")], me)
    result = run(d, batch)
    assert store.roundtrips == [] and batch.roundtrip is None
    [oc] = result.outcomes
    assert (oc.status, oc.outcome, oc.command) == (Status.ROK, "unknown_short_code", "-")


def test_a_round_trip_is_watermarks_then_scripts_then_records_then_mt_records_then_receipts(setup):
    d, store, me = setup()
    head = [("HSET", store.keys.marks(0), "bot-0/1", "7")]
    tail = [("EVALSHA", store.receipt_sha, 2, "k1", "k2", "bind", "DELIVRD", "", 1, 60)]
    batch = d.prepare([inbound(1), inbound(2, "13900139000")], me, acks=[("smsbot:{3}:outbox", "5-0")],
                      writes=[KeyWrite("mtkey", {"a": "b"}, 60, push=True)], tail=tail, head=head)
    d.start(batch)
    assert store.kinds(batch.roundtrip) == ["HSET", "mo", "mo", "XDEL", "RPUSH", "EXPIRE", "receipt"]
    assert store.marks(batch.roundtrip) == {"bot-0/1": 7}
    assert store.recorded(batch.roundtrip) == {"smsbot:{3}:outbox": ["5-0"]}


def test_status_0_and_the_reply_only_from_the_stored_effect(setup):
    d, store, me = setup()
    store.script_mo("13800138000", store.mo_reply("menu_sent", [("9-0", "notice", {"text": "hi"})]))
    batch = d.prepare([inbound(1)], me)
    result = run(d, batch)
    [oc] = result.outcomes
    assert (oc.status, oc.outcome, oc.command) == (Status.ROK, "menu_sent", "subscriptions")
    assert result.acks_flushed
    assert result.entries == [(store.keys.outbox(0), "9-0", {"to": "13800138000", "from": "10086", "lang": "zh-CN",
                                                                  "mo": oc.correlation, "tpl": "notice",
                                                                  "data": '{"text": "hi"}'})]


def test_redis_unreachable_is_try_again_for_every_mo(setup):
    d, store, me = setup()
    store.refuse = 1
    batch = d.prepare([inbound(1), inbound(2, short_code="99999")], me, acks=[("s", "1-0")])
    result = run(d, batch)
    assert batch.roundtrip is None and batch.error is not None
    assert [(oc.status, oc.outcome) for oc in result.outcomes] == [
        (Status.RX_T_APPN, "redis_unreachable"), (Status.ROK, "unknown_short_code")]
    assert not result.acks_flushed and result.entries == []


def test_an_answer_lost_on_the_way_is_try_again(setup):
    d, store, me = setup()
    store.lose = 1
    batch = d.prepare([inbound(1)], me)
    d.start(batch)
    with pytest.raises(redis.ConnectionError) as lost:
        batch.roundtrip.wait()
    batch.error = lost.value
    result = d.finish(batch)
    assert [(oc.status, oc.outcome) for oc in result.outcomes] == [(Status.RX_T_APPN, "redis_unreachable")]


def test_a_script_error_fails_its_mo_alone_and_drops_its_guard(setup):
    d, store, me = setup()
    store.script_mo("13900139000", error_reply("ERR user_script:1: boom"))
    result = run(d, d.prepare([inbound(1), inbound(2, "13900139000")], me))
    ok, failed = result.outcomes
    assert ok.status == Status.ROK and ok.guard
    assert (failed.status, failed.outcome, failed.guard) == (Status.RX_T_APPN, "script_error", "")
    assert result.acks_flushed and len(result.entries) == 1


def test_a_failed_record_or_receipt_fails_the_whole_batch(setup):
    d, store, me = setup()
    store.command_errors["XDEL"] = error_reply("ERR something went wrong")
    result = run(d, d.prepare([inbound(1)], me, acks=[("smsbot:{1}:outbox", "1-0")]))
    assert [(oc.status, oc.outcome) for oc in result.outcomes] == [(Status.RX_T_APPN, "redis_error")]
    assert not result.acks_flushed and result.entries == []


def test_a_suspected_redelivery_counts_its_copies(setup):
    d, store, me = setup()
    store.script_mo("13800138000", store.mo_reply("redelivered", [("3-0", "notice", {"text": "again"})], extra=b"1"))
    [oc] = run(d, d.prepare([inbound(1)], me)).outcomes
    assert (oc.status, oc.outcome, oc.copies) == (Status.ROK, "redelivered", 1)


def test_records_alone_make_a_round_trip_and_nothing_makes_none(setup):
    d, store, me = setup()
    empty = d.prepare([], me)
    d.start(empty)
    assert empty.roundtrip is None and store.roundtrips == []
    records = d.prepare([], me, acks=[("smsbot:{2}:queue", "7-0")])
    assert run(d, records).acks_flushed and store.kinds(records.roundtrip) == ["XACK", "XDEL"]  # a queue entry leaves the group's pending list too


TRYAGAIN = "TRYAGAIN Multiple keys request during rehashing of slot"


def test_an_mo_whose_slot_is_moving_is_not_run_and_leaves_no_guard(setup):
    d, store, me = setup()
    store.script_mo("13800138000", error_reply(TRYAGAIN))
    batch = d.prepare([inbound(1, "13800138000"), inbound(2, "13900139000")], me)
    result = run(d, batch, give_back_tryagain=True)
    moving, served = result.outcomes
    assert (moving.status, moving.outcome, moving.guard) == (Status.RX_T_APPN, "slot_migrating", "")
    assert (served.status, served.outcome) == (Status.ROK, "menu_sent") and served.guard
    assert len(result.entries) == 1  # the served MO's reply only: Redis ran nothing for the other


def test_only_a_caller_that_asks_gets_the_scripts_tryagain_back_soon(setup):
    d, store, me = setup()
    asked = d.prepare([inbound(1, "13800138000")], me, acks=[("smsbot:{0}:outbox", "1-0")])
    d.start(asked, give_back_tryagain=True)
    kinds = store.kinds(asked.roundtrip)
    assert [kinds[i] for i in asked.roundtrip.give_back] == ["mo"]  # its script; never the records
    default = d.prepare([inbound(2, "13800138000")], me)
    d.start(default)
    assert default.roundtrip.give_back == range(0)  # the long wait (billing, API, delivery's scripts)


def test_a_tryagain_the_caller_did_not_ask_back_is_a_script_error(setup):
    """Followed for 10 s by the round trip, then it fails as today (the MO is refused and redelivered)."""
    d, store, me = setup()
    store.script_mo("13800138000", error_reply(TRYAGAIN))
    [oc] = run(d, d.prepare([inbound(1, "13800138000")], me)).outcomes
    assert (oc.status, oc.outcome, oc.guard) == (Status.RX_T_APPN, "script_error", "")
