"""End to end over SMPP: handset -> simulated SMSC -> bot -> Redis -> bot -> SMSC -> handset.

The 0000 menu and numeric-reply cancel, as a subscriber experiences them.
"""

from __future__ import annotations

import time

import pytest

from .conftest import World
from .state import audit_entries, subs_state

MSISDN = "13800138000"


def test_menu_lists_services_in_order_with_prices(world: World):
    world.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    text = world.handset(MSISDN).ask("0000")
    lines = text.splitlines()
    assert lines[1] == "1. 视频会员包月 15元/月"
    assert lines[2] == "2. 彩铃音乐包 5元/月"
    assert lines[3] == "3. 手机早晚报 3元/月"
    assert "回复序号退订" in text


def test_cancel_one_then_several_then_again(world: World):
    world.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS", "GAME")
    phone = world.handset(MSISDN)
    phone.ask("0000")
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
    reply = phone.ask("1，4")
    assert "您已成功退订视频会员包月" in reply and "您已成功退订游戏畅玩包" in reply
    again = phone.ask("2")
    assert "彩铃音乐包已退订" in again and "成功" not in again
    assert subs_state(world, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "cancelled", "NEWS": "active", "GAME": "cancelled"}
    cancels = [e for e in audit_entries(world, MSISDN) if e["new"] == "cancelled"]
    assert sorted(e["service"] for e in cancels) == ["GAME", "MUSIC", "VIDEO"]
    assert all(e["old"] == "active" and e["reason"] == "menu" and e["mo"] for e in cancels)
    # the next 0000 shows only what is left, renumbered
    menu = phone.ask("0000")
    assert "1. 手机早晚报" in menu and "视频" not in menu


@pytest.mark.parametrize("text", ["００００", " 0000 ", "00000"])
def test_menu_keyword_variants(world: World, text: str):
    world.subscribe(MSISDN, "NEWS")
    assert "1. 手机早晚报" in world.handset(MSISDN).ask(text)


@pytest.mark.parametrize("reply", ["１", "1 2", "1,2", "１，２"])
def test_number_variants_cancel(world: World, reply: str):
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    phone.ask("0000")
    assert "您已成功退订视频会员包月" in phone.ask(reply)


def test_no_subscriptions(world: World):
    assert "没有订购任何包月增值业务" in world.handset("13900000001").ask("0000")


@pytest.mark.parametrize("garbled", ["7", "0", "abc", "1 9"])
def test_out_of_range_or_garbled_keeps_menu_open(world: World, garbled: str):
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    phone.ask("0000")
    assert "请回复1至2之间的序号" in phone.ask(garbled)
    assert subs_state(world, MSISDN) == {"VIDEO": "active", "MUSIC": "active"}
    assert "您已成功退订彩铃音乐包" in phone.ask("2")


def test_menu_expires(make_world):
    """The menu's validity is judged by the MO's time (the bot's clock, moved here), not by waiting."""
    later = [0.0]
    w = make_world(clock=lambda: time.time() + later[0], **{"menu.validity_seconds": 60})
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    assert "1小时" not in phone.ask("0000")
    later[0] = 61.0
    assert "菜单已过期" in phone.ask("1")
    assert subs_state(w, MSISDN) == {"VIDEO": "active"}


def test_number_without_menu(world: World):
    world.subscribe(MSISDN, "VIDEO")
    assert "发送0000" in world.handset(MSISDN).ask("1")
    assert subs_state(world, MSISDN) == {"VIDEO": "active"}


def test_unknown_text_gets_help(world: World):
    reply = world.handset(MSISDN).ask("hello there")
    assert "0000" in reply and "10086" in reply


def test_unknown_short_code_gets_no_reply(world: World):
    phone = world.handset(MSISDN)
    mo = phone.send("0000", to="99999")
    status = world.sim.wait_mo(mo, timeout=5)
    assert status and status["state"] == "delivered"
    assert phone.quiet() == []


def test_subscriber_only_touches_own_subscriptions(world: World):
    a, b = "13800000001", "13800000002"
    world.subscribe(a, "VIDEO", "MUSIC")
    world.subscribe(b, "NEWS")
    pa, pb = world.handset(a), world.handset(b)
    pa.ask("0000")
    # b has no menu open: its "1" must not cancel a's item 1, nor b's own
    assert "发送0000" in pb.ask("1")
    assert subs_state(world, a) == {"VIDEO": "active", "MUSIC": "active"}
    assert subs_state(world, b) == {"NEWS": "active"}
    pb.ask("0000")
    pb.ask("1")
    assert subs_state(world, b) == {"NEWS": "cancelled"}
    assert subs_state(world, a) == {"VIDEO": "active", "MUSIC": "active"}


def test_twenty_items_arrive_whole(make_world):
    services = [{"code": f"SVC{i:02d}", "name": f"增值业务{i:02d}号", "price_fen": 100 * i, "kind": "monthly"} for i in range(1, 21)]
    w = make_world(services=services)
    w.subscribe(MSISDN, *[s["code"] for s in services])
    phone = w.handset(MSISDN)
    phone.send("0000")
    got = phone.expect(1)
    assert len(got) == 1, "the long menu must arrive as ONE whole message"
    msg = got[0]
    assert msg["parts"] > 1
    numbered = [line for line in msg["text"].splitlines() if line.split(". ")[0].isdigit()]
    assert len(numbered) == 20
    assert numbered[0] == "1. 增值业务01号 1元/月"
    assert numbered[19] == "20. 增值业务20号 20元/月"
    assert "请回复1至20之间的序号" in phone.ask("21")
    assert "增值业务20号" in phone.ask("20")


def test_menu_follows_every_subscription_change(world: World):
    """The menu is read from an index derived from the subscription records (one string, no record
    decoded on the hot path); every change to the records must show in the next 0000, and a missing
    index (data from before it existed) is rebuilt."""
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    first = phone.ask("0000")
    assert "2. 彩铃音乐包" in first and "3." not in first
    store = world.bot.store
    assert store.redis.get(store.keys.subscriber(MSISDN).live) == b'2|["VIDEO","MUSIC"]'
    world.subscribe(MSISDN, "NEWS")  # an ops change outside any conversation
    assert store.redis.get(store.keys.subscriber(MSISDN).live) == b'3|["VIDEO","MUSIC","NEWS"]'
    store.redis.delete(store.keys.subscriber(MSISDN).live)
    assert "3. 手机早晚报" in phone.ask("0000")
    phone.ask("1")  # cancel through the menu
    after = phone.ask("0000")
    assert "视频" not in after and after.splitlines()[1].startswith("1. 彩铃音乐包")
    assert store.redis.get(store.keys.subscriber(MSISDN).live) == b'2|["MUSIC","NEWS"]'


def test_long_menu_is_truncated_to_max_items(make_world):
    w = make_world(**{"menu.max_items": 2})
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    menu = phone.ask("0000")
    assert "1. 视频会员包月" in menu and "2. 彩铃音乐包" in menu and "手机早晚报" not in menu
    assert "仅显示前2项，共3项" in menu
    assert "1至2之间" in phone.ask("3"), "only the items shown can be cancelled"
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
