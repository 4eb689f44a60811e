"""The MO step's stored state on a real Redis: one key per subscriber and short code holds the
conversation and the redelivery guards (`smsbot.records`), written by one SET per MO; a guard of
another session holds until that session's watermark passes its batch, or it expires; within one
session a repeated text is a new MO; the form before (a conversation's JSON alone, a guard key of
its own) is read and the new form written. README: "Duplicates and redeliveries"."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from commands import all_commands
from smsbot import admin, connections
from smsbot.delivery import MARKS_PRUNE_SLACK_S, prune_marks
from smsbot.dispatch import Dispatcher
from smsbot.identity import SenderIdentity
from smsbot.live import Live
from smsbot.messages import Inbound
from smsbot.records import STATE_MARK, mark_value, read_mark, read_state
from smsbot.router import Router

MSISDN = "13800138000"
T0 = 1_800_000_000.0
GUARD_S = 600
MENU_S = 60  # the menu is valid this long, then kept as long again (an expired menu's numbers are told so)


class Step:
    """The MO step as the pipeline runs it, for one sender: batches numbered by the test."""

    def __init__(self, make_settings: Callable[..., Any]):
        self.settings = make_settings(**{"dispatch.redelivery_guard_seconds": GUARD_S, "menu.validity_seconds": MENU_S,
                                         "menu.expired_notice_seconds": MENU_S})
        self.store = connections.open_store(self.settings)
        self.store.load_scripts()
        self.now = T0
        self.dispatcher = Dispatcher(Live(self.settings, Router(self.settings, all_commands())), self.store,
                                     clock=lambda: self.now)
        self.keys = self.store.keys
        self.r = self.store.redis
        self.seq = 0
        assert admin.subscribe(self.settings, MSISDN, "VIDEO", store=self.store, at_ms=int(T0 * 1000) - 1000) == "added"
        assert admin.subscribe(self.settings, MSISDN, "MUSIC", store=self.store, at_ms=int(T0 * 1000) - 999) == "added"

    def sender(self, session: int) -> SenderIdentity:
        me = SenderIdentity("bot-1", tuple(self.keys.lease_prefix(n) for n in range(self.keys.shards)), session=session)
        self.r.set(me.lease_key(0), me.consumer, px=600_000)
        return me

    def mo(self, text: str, sender: SenderIdentity, batch: int, mark: int = 0) -> str:
        self.seq += 1
        b = self.dispatcher.prepare([Inbound(sequence=self.seq, msisdn=MSISDN, short_code="10086", text=text)], sender,
                                    number=batch, mark=mark)
        self.dispatcher.start(b)
        assert b.roundtrip is not None
        b.raw = b.roundtrip.wait()
        [oc] = self.dispatcher.finish(b).outcomes
        return oc.outcome

    def confirm(self, sender: SenderIdentity, mark: int) -> None:
        self.r.hset(self.keys.marks(0), sender.token, mark)

    def state(self) -> Any:
        return read_state(self.r.get(self.keys.conv(MSISDN, "10086")), int(self.now * 1000))


@pytest.fixture
def step(make_settings: Callable[..., Any]) -> Step:
    return Step(make_settings)


def test_another_sessions_guard_holds_until_its_watermark_passes_its_batch(step: Step):
    first, second = step.sender(1), step.sender(2)
    assert step.mo("0000", first, batch=1) == "menu_sent"
    [g] = step.state().guards
    assert (g.token, g.batch, g.until_ms) == ("bot-1/1", 1, int(T0 * 1000) + GUARD_S * 1000) and g.replies[2] == "subscriptions.menu"
    assert step.mo("0000", second, batch=2) == "redelivered"  # its resp may not have been read: not applied again
    step.confirm(first, 1)  # the SMSC read it: the same text again is a new MO
    assert step.mo("0000", second, batch=3) == "menu_sent"
    assert [(g.token, g.batch) for g in step.state().guards] == [("bot-1/2", 3)]


def test_a_watermark_below_the_guards_batch_does_not_release_it(step: Step):
    first, second = step.sender(1), step.sender(2)
    assert step.mo("0000", first, batch=5) == "menu_sent"
    step.confirm(first, 4)
    assert step.mo("0000", second, batch=6) == "redelivered"


def test_within_one_session_a_repeated_text_is_a_new_mo_and_confirmed_guards_go(step: Step):
    me = step.sender(1)
    assert step.mo("0000", me, batch=1) == "menu_sent"
    assert step.mo("0000", me, batch=2) == "menu_sent"
    assert [g.batch for g in step.state().guards] == [2]  # the same text's guard replaced
    step.mo("help", me, batch=3)
    assert [g.batch for g in step.state().guards] == [2, 3]  # batch 2's resp not known read: kept
    step.mo("help me", me, batch=4, mark=3)
    assert [g.batch for g in step.state().guards] == [4]  # the session's mark (in ARGV) passed 2 and 3: dropped


def test_a_guard_expires(step: Step):
    first, second = step.sender(1), step.sender(2)
    assert step.mo("0000", first, batch=1) == "menu_sent"
    step.now += GUARD_S + 1
    assert step.mo("0000", second, batch=2) == "menu_sent"


def test_the_conversation_ends_on_time_while_guards_keep_the_key(step: Step):
    me = step.sender(1)
    assert step.mo("0000", me, batch=1) == "menu_sent"
    step.now += MENU_S + 1
    assert step.mo("1", me, batch=2) == "menu_expired"  # still kept: its numbers are told it expired
    step.now += MENU_S
    assert step.state().conversation is None and step.state().guards  # the key lives on for the guards
    assert step.mo("1", me, batch=3) == "no_menu"  # nothing cancelled: the menu is gone
    assert step.r.pttl(step.keys.conv(MSISDN, "10086")) > (GUARD_S - 1) * 1000


def test_one_set_per_mo(step: Step):
    """The MO step of the 0000 menu, as Redis runs it: one MGET (state, lease, live index, the old
    guard), one SET (conversation and guard), one XADD (the reply)."""
    me = step.sender(1)
    assert step.mo("0000", me, batch=1) == "menu_sent"
    with step.r.monitor() as m:
        assert step.mo("0000", me, batch=2) == "menu_sent"
        step.r.echo("end-of-step")
        seen = []
        while True:
            cmd = m.next_command()["command"]
            if "end-of-step" in cmd:
                break
            if MSISDN in cmd:  # this MO's: its script and the commands it ran
                seen.append(cmd.split(" ", 1)[0].upper())
    assert sorted(seen) == ["EVALSHA", "MGET", "SET", "XADD"], seen


def commands_run(step: Step, text: str, sender: SenderIdentity, batch: int) -> list[str]:
    """The commands Redis ran for one MO (its script and what the script called), by MONITOR."""
    with step.r.monitor() as m:
        step.mo(text, sender, batch=batch)
        step.r.echo("end-of-step")
        seen = []
        while True:
            cmd = m.next_command()["command"]
            if "end-of-step" in cmd:
                return seen
            if MSISDN in cmd:
                seen.append(cmd.split(" ", 1)[0].upper())


def test_a_cancellation_takes_the_codes_out_of_the_live_index_without_reading_the_records(step: Step):
    """Cancelling by menu numbers leaves the live index's other codes in their order (no HGETALL of
    the records); a subscription turned on rebuilds it; the index always equals the rebuild."""
    me = step.sender(1)
    live = step.keys.subscriber(MSISDN).live
    assert admin.subscribe(step.settings, MSISDN, "NEWS", store=step.store, at_ms=int(T0 * 1000) - 998) == "added"
    assert step.mo("0000", me, batch=1) == "menu_sent"
    assert step.r.get(live) == b'3|["VIDEO","MUSIC","NEWS"]'
    ran = commands_run(step, "1 3", me, batch=2)
    assert "HGETALL" not in ran and ran.count("SET") == 2, ran  # the live index and the MO state
    assert step.r.get(live) == b'1|["MUSIC"]'
    step.r.delete(live)  # what a rebuild from the records gives
    assert step.mo("0000", me, batch=3) == "menu_sent" and step.r.get(live) == b'1|["MUSIC"]'
    ran = commands_run(step, "1", me, batch=4)
    assert step.r.get(live) == b'0|[]' and "HGETALL" not in ran
    assert admin.subscribe(step.settings, MSISDN, "VIDEO", store=step.store, at_ms=int(T0 * 1000)) == "added"
    assert step.r.get(live) == b'1|["VIDEO"]'


def test_other_sessions_guards_beyond_a_few_are_dropped_once_confirmed(step: Step):
    for session in range(1, 8):
        step.mo(f"text {session}", step.sender(session), batch=session)
    for session in range(1, 7):
        step.confirm(step.sender(session), session if session != 3 else 2)  # batch 3's resp never read
    step.mo("text 8", step.sender(8), batch=8)
    assert [(g.token, g.batch) for g in step.state().guards] == [("bot-1/3", 3), ("bot-1/7", 7), ("bot-1/8", 8)]


def test_the_form_before_is_read_and_the_new_form_written(step: Step):
    """A bot upgraded in place: a menu stored as JSON alone is answered, and a guard key of the
    version before holds the same MO as a possible redelivery."""
    me = step.sender(1)
    conv = step.keys.conv(MSISDN, "10086")
    exp = int(step.now * 1000) + 60_000
    step.r.set(conv, '{"type":"menu","exp":%d,"items":["VIDEO","MUSIC"]}' % exp, px=120_000)
    assert step.mo("1", me, batch=1) == "cancelled"
    raw = step.r.get(conv)
    assert raw.startswith(STATE_MARK.encode()) and step.state().conversation is not None
    # the guard of a help MO kept by the version before: <token> NUL own NUL id NUL template NUL data
    fp_call = step.dispatcher.prepare([Inbound(sequence=99, msisdn=MSISDN, short_code="10086", text="0000")], me).calls[0]
    step.r.set(fp_call.keys.old_guard, "old-bot/3\x000\x001-1\x00help\x00{}", px=60_000)
    assert step.mo("0000", me, batch=2) == "redelivered"


def test_watermarks_of_sessions_long_gone_are_pruned(step: Step):
    """A dead process never deletes its sessions' watermarks: `prune_marks` forgets those written
    before a guard's whole life (and the clocks' slack) ago, gives one of the form before (a batch
    number alone) a time, and keeps the rest; a guard whose watermark went is not confirmed."""
    marks = step.keys.marks(0)
    now_ms = int(T0 * 1000)
    gone_before = now_ms - (GUARD_S + MARKS_PRUNE_SLACK_S) * 1000
    me = step.sender(1)
    assert step.mo("0000", me, batch=1) == "menu_sent"
    step.r.hset(marks, mapping={"dead/1": mark_value(7, gone_before - 1), "alive/1": mark_value(9, gone_before + 1),
                                "bot-1/1": mark_value(1, gone_before - 5), "old/1": "4"})
    assert prune_marks(step.store, GUARD_S, now_ms) == 2
    left = step.r.hgetall(marks)
    assert {k.decode(): read_mark(v) for k, v in left.items()} == {"alive/1": 9, "old/1": 4}
    assert left[b"old/1"] == f"4:{now_ms}".encode()
    # bot-1/1's watermark went: its guard of batch 1 holds again for another session (until it expires)
    assert step.mo("0000", step.sender(2), batch=2) == "redelivered"
    step.confirm(me, 1)
    assert step.mo("0000", step.sender(2), batch=3) == "menu_sent"
