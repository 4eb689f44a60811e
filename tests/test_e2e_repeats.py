"""A person repeating a text is never left unanswered; an SMSC's redelivery is never applied twice.

Over real SMPP with the simulator sending no message reference (so a repeated text and a
redelivery look the same on the wire): a repeat after the link dropped, with and without delivery
receipts; a repeat on a sibling instance; an SMSC that never reads the resp and never redelivers;
a true redelivery after a lost resp. README: "Duplicates and redeliveries".
"""

from __future__ import annotations

import pytest

from smsbot.records import Guard

from .helpers import wait_until

from .conftest import World
from .state import audit_entries, held_guards, subs_state

MSISDN = "13800138000"
MENU = "视频会员包月"
CANCELLED = "您已成功退订视频会员包月"


def guards(world: World, msisdn: str = MSISDN) -> list[Guard]:
    return held_guards(world, msisdn)


def copies(world: World) -> float:
    return sum(bot.metrics.reply_copies._value.get() for bot in world.bots)


def no_reference(world: World) -> None:
    world.sim.set_profile(user_message_reference=False)


def wait_rebound(world: World, binds: int = 1) -> None:
    assert wait_until(lambda: world.sim.stats()["binds"] == binds, 10), "the bot did not bind again"


@pytest.mark.parametrize("receipts", [False, True], ids=["no-receipts", "receipts-asked-never-sent"])
def test_guard_goes_once_the_smsc_read_the_resp_without_further_traffic(make_world, receipts: bool):
    """The SMSC answers the enquire_link written behind the resp: the session's watermark passes
    the guard in a round trip of its own, not left waiting for the next MO (before: it stayed until one came)."""
    w = make_world(**{"smsc.registered_delivery": int(receipts), "simulator.send_receipts": False})
    no_reference(w)
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    assert MENU in phone.ask("0000")
    assert wait_until(lambda: not guards(w), 5), guards(w)


@pytest.mark.parametrize("receipts", [False, True], ids=["no-receipts", "receipts-asked-never-sent"])
def test_repeat_after_a_dropped_link_is_answered(make_world, receipts: bool):
    w = make_world(**{"smsc.registered_delivery": int(receipts), "simulator.send_receipts": False})
    no_reference(w)
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    for _ in range(3):
        assert MENU in phone.ask("0000")
        assert w.sim.drop_connections() == 1
        wait_rebound(w)
    assert MENU in phone.ask("0000")
    assert phone.quiet() == []


def test_repeat_on_a_sibling_instance_is_answered(make_world):
    """Two instances on one Redis, receipts asked for but never coming: every 0000 of a person
    who repeats it is answered, whichever bind it arrives on."""
    w = make_world(**{"smsc.registered_delivery": 1, "simulator.send_receipts": False})
    no_reference(w)
    second = w.start_bot()
    wait_rebound(w, 2)
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    for _ in range(6):
        assert MENU in phone.ask("0000")
    assert w.bot.mo_count > 0 and second.mo_count > 0, "the MOs came on both binds"
    assert phone.quiet() == []


def test_smsc_that_never_reads_the_resp_nor_redelivers(world: World):
    """The link is reset before the SMSC reads the resp, and the SMSC forgets the MO: the guard
    stays (the resp may have been lost), yet the person's repeat is answered; the cancel is not
    applied twice."""
    no_reference(world)
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    assert MENU in phone.ask("0000")
    mo = phone.send("1", lost_resp=True, redeliver=False)
    st = world.sim.wait_mo(mo, timeout=10)
    assert st["state"] == "delivered" and st["redeliveries"] == 0, st
    assert CANCELLED in phone.expect(1)[0]["text"]
    wait_rebound(world)
    assert guards(world), "the resp was never confirmed: its guard holds"
    again = phone.ask("1")
    assert CANCELLED in again, "the repeat is answered with what the MO was answered before"
    assert phone.quiet() == []
    assert subs_state(world, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active"}
    assert len([e for e in audit_entries(world, MSISDN) if e["new"] == "cancelled"]) == 1
    assert copies(world) == 1


def test_true_redelivery_after_a_lost_resp_is_answered_but_applied_once(world: World):
    """The SMSC loses the resp with the link and redelivers the MO on the next bind: the cancel is
    applied once; the subscriber is answered, at worst twice (the copy is counted)."""
    no_reference(world)
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    assert MENU in phone.ask("0000")
    mo = phone.send("1", lost_resp=True)
    st = world.sim.wait_mo(mo, timeout=10)
    assert st["state"] == "delivered" and st["redeliveries"] == 1, st
    replies = phone.expect(1)
    replies += phone.quiet()
    assert replies and all(CANCELLED in r["text"] for r in replies), replies
    assert len(replies) == 1 + copies(world) <= 2
    assert len([e for e in audit_entries(world, MSISDN) if e["new"] == "cancelled"]) == 1
    assert _counted(world, "redelivered") == 1


def _counted(world: World, outcome: str) -> float:
    world.bot.metrics.mo_hot.publish()
    return sum(s.value for m in world.bot.metrics.mo.collect() for s in m.samples
               if s.name == "smsbot_mo_total" and s.labels["outcome"] == outcome)
