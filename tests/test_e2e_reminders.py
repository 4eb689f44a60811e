"""End to end: an order on the event stream -> bot (consumer group) -> reminder over SMPP -> the
subscriber replies TD -> confirmation -> a billing run charges nothing for it and charges the rest.
Plus: several pending orders (the bot asks which), a reply after the first charge (cancelled from
the next period), the 0000 menu before the first charge, duplicate order events, and the CLI
(`smsbot order`, `use`, `billing run|ledger|verify`) as a separate process against the running bot.

Orders are written exactly as `smsbot order` writes them (`commands.orders.events.write_order`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from smsbot import billing
from smsbot.periods import period_of, zone

from .billing_steps import order, run_billing
from .conftest import World, cli, write_config
from .helpers import wait_until
from .state import subs_state

MSISDN = "13800138000"
OTHER = "13900139000"
HOUR = 3600_000
DAY = 24 * HOUR


def now_ms() -> int:
    return int(time.time() * 1000)


def charged(world: World, msisdn: str) -> set[str]:
    return {c.field for c in billing.ledger(world.bot.store, msisdn)}


def label(world: World, at_ms: int) -> str:
    return period_of(at_ms, zone(world.settings.billing.timezone)).label


def verify_ok(world: World) -> None:
    rep = billing.verify(world.settings, world.bot.store)
    assert rep.ok, rep.discrepancies


def test_order_reminder_reply_cancels_and_the_run_charges_only_the_others(world: World):
    world.subscribe(MSISDN, "NEWS")  # an older monthly service, charged as usual
    phone, other = world.handset(MSISDN), world.handset(OTHER)
    order(world, MSISDN, "VIDEO")
    order(world, OTHER, "VIDEO")
    reminder = phone.expect(1)[0]["text"]
    assert "扣费提醒" in reminder and "视频会员包月" in reminder and "15元/月" in reminder and "回复TD" in reminder
    assert "视频会员包月" in other.expect(1)[0]["text"]
    assert subs_state(world, MSISDN) == {"NEWS": "active", "VIDEO": "pending"}

    reply = phone.ask("TD")
    assert "您已成功退订视频会员包月" in reply and "不会收取任何费用" in reply
    assert subs_state(world, MSISDN) == {"NEWS": "active", "VIDEO": "cancelled"}

    at = now_ms() + 2 * DAY  # past the one-day grace
    summary = run_billing(world, at)
    p = label(world, at)
    assert charged(world, MSISDN) == {f"NEWS:{p}"}
    assert charged(world, OTHER) == {f"VIDEO:{p}"}
    assert summary.charged == 2 and summary.skipped["cancelled_before_first_charge"] == 1
    assert subs_state(world, OTHER) == {"VIDEO": "active"}  # first charge made
    # a second run, and one overlapping in time, change nothing
    assert run_billing(world, at + HOUR).charged == 0
    assert charged(world, MSISDN) == {f"NEWS:{p}"} and charged(world, OTHER) == {f"VIDEO:{p}"}
    verify_ok(world)
    # every change is in the audit stream
    audit = [
        {k.decode(): v.decode() for k, v in f.items()}
        for _id, f in world.bot.store.redis.xrange(world.bot.store.keys.subscriber(MSISDN).audit)
    ]
    mine = [(e["service"], e["old"], e["new"], e["reason"]) for e in audit if e["msisdn"] == MSISDN]
    assert ("VIDEO", "none", "pending", "order") in mine
    assert ("VIDEO", "pending", "cancelled", "reply") in mine
    assert ("NEWS", "active", "active", "charge") in mine


def test_several_pending_orders_the_bot_asks_which(world: World):
    phone = world.handset(MSISDN)
    order(world, MSISDN, "VIDEO")
    order(world, MSISDN, "MUSIC")
    assert len(phone.expect(2)) == 2
    question = phone.ask("取消")
    assert "2项新订购" in question and "1. 视频会员包月 15元/月" in question and "2. 彩铃音乐包 5元/月" in question
    assert subs_state(world, MSISDN) == {"VIDEO": "pending", "MUSIC": "pending"}  # nothing guessed
    assert "请回复1至2" in phone.ask("3")
    answer = phone.ask("２")
    assert "您已成功退订彩铃音乐包" in answer and "视频" not in answer
    assert subs_state(world, MSISDN) == {"VIDEO": "pending", "MUSIC": "cancelled"}
    # only one left in its grace period: the cancel word now names it and cancels it directly
    assert "您已成功退订视频会员包月" in phone.ask("TD")
    assert "没有可回复退订" in phone.ask("td")
    run_billing(world, now_ms() + 2 * DAY)
    assert charged(world, MSISDN) == set()
    verify_ok(world)


def test_reply_after_the_first_charge_cancels_from_the_next_period(world: World):
    phone = world.handset(MSISDN)
    tz = zone(world.settings.billing.timezone)
    ordered = now_ms() - 2 * DAY  # the order is two days old: its grace is over
    order(world, MSISDN, "GAME", at_ms=ordered)
    assert "游戏畅玩包" in phone.expect(1)[0]["text"]
    now = now_ms()
    run_billing(world, now)
    this = period_of(now, tz)
    assert charged(world, MSISDN) == {f"GAME:{this.label}"}
    reply = phone.ask("N")
    nxt = period_of(this.end_ms, tz)
    y, m = nxt.label.split("-")
    assert "您已退订游戏畅玩包" in reply and "本期费用照常收取" in reply and f"自{int(y)}年{int(m)}月起不再收费" in reply
    run_billing(world, nxt.start_ms + HOUR)  # next month: not charged again
    assert charged(world, MSISDN) == {f"GAME:{this.label}"}
    verify_ok(world)


def test_menu_cancel_before_the_first_charge_means_no_charge(world: World):
    phone = world.handset(MSISDN)
    order(world, MSISDN, "READ")
    phone.expect(1)
    menu = phone.ask("0000")
    assert "1. 阅读包月 5元/月" in menu  # the pending order is on the menu
    assert "您已成功退订阅读包月" in phone.ask("1")
    summary = run_billing(world, now_ms() + 2 * DAY)
    assert charged(world, MSISDN) == set()
    assert summary.skipped["cancelled_before_first_charge"] == 1
    verify_ok(world)


def test_duplicate_order_events_send_one_reminder_and_make_one_subscription(world: World):
    phone = world.handset(MSISDN)
    oid = order(world, MSISDN, "VIDEO")
    order(world, MSISDN, "VIDEO", order_id=oid)  # the order system sent it twice
    assert len(phone.expect(1)) == 1
    assert phone.quiet() == []
    assert "您已成功退订视频会员包月" in phone.ask("TD")
    order(world, MSISDN, "VIDEO", order_id=oid)  # a late redelivery does not revive the cancelled order
    assert phone.quiet() == []
    assert subs_state(world, MSISDN) == {"VIDEO": "cancelled"}


def test_help_lists_the_cancel_word(world: World):
    assert "TD 退订待扣费的新订购业务" in world.handset(MSISDN).ask("帮助")


def test_english_short_code(make_world):
    w = make_world(short_codes=[{"code": "10086", "language": "en", "commands": ["subscriptions", "orders", "help"]}])
    phone = w.handset(MSISDN)
    order(w, MSISDN, "VIDEO", at_ms=now_ms() - 2 * DAY)
    reminder = phone.expect(1)[0]["text"]
    assert reminder.startswith("Charge reminder: you ordered Video monthly at 15 yuan/month") and "reply TD" in reminder
    reply = phone.ask("td")
    assert "Cancelled: Video monthly. Charging had already started" in reply
    import calendar

    tz = zone(w.settings.billing.timezone)
    nxt = period_of(period_of(now_ms(), tz).end_ms, tz)
    y, m = nxt.label.split("-")
    assert f"from {calendar.month_name[int(m)]} {y} on" in reply


# -- the CLI, as a separate process (helpers in conftest) -------------------------------------------


def test_cli_order_refusals_write_nothing(world: World, tmp_path: Path):
    cfg = write_config(world, tmp_path)
    store = world.bot.store
    for args, message in [
        (["12ab", "VIDEO"], "not a subscriber number"),
        ([MSISDN, "NOSUCH"], "unknown service code 'NOSUCH'"),
        ([MSISDN, "VIDEO", "--at", "next tuesday"], "not a time"),
    ]:
        res = cli(cfg, "order", *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr and "Traceback" not in res.stderr, res.stderr
    res = cli(cfg, "use", MSISDN, "VIDEO")
    assert res.returncode == 2 and "not an on-demand service" in res.stderr
    assert store.redis.xlen(store.keys.order_events()) == 0
    assert store.redis.xlen(store.keys.use_events()) == 0


def test_cli_order_use_billing_and_verify(world: World, tmp_path: Path):
    cfg = write_config(world, tmp_path)
    phone = world.handset(MSISDN)
    res = cli(cfg, "order", MSISDN, "ring")  # codes are case-insensitive
    assert res.returncode == 0, res.stderr
    assert "RING" in res.stdout and "queued" in res.stdout
    reminder = phone.expect(1)[0]["text"]
    assert "彩铃点播" in reminder and "2元/次" in reminder
    world.subscribe(MSISDN, "NEWS")
    later = time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(time.time() + 8 * 3600 + 2 * 86400))
    use = cli(cfg, "use", MSISDN, "RING", "--at", later, "--use-id", "u-1")
    assert use.returncode == 0, use.stderr
    assert wait_until(lambda: any(c.use == "u-1" for c in billing.ledger(world.bot.store, MSISDN)), 10)
    assert cli(cfg, "use", MSISDN, "RING", "--at", later, "--use-id", "u-1").returncode == 0  # same use again
    run = cli(cfg, "billing", "run", "--at", later)
    assert run.returncode == 0, run.stderr
    assert "1 subscribers, 2 subscriptions seen" in run.stdout and "charged: 1 (3.00 yuan)" in run.stdout
    assert "on_demand: 1" in run.stdout
    led = cli(cfg, "billing", "ledger", MSISDN)
    assert led.returncode == 0, led.stderr
    assert "NEWS" in led.stdout and "use u-1" in led.stdout and "total\t5.00 yuan, 2 charge(s)" in led.stdout
    ok = cli(cfg, "billing", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "no discrepancies" in ok.stdout
    # a forged charge and a deleted one: verify names both and fails
    store = world.bot.store
    fields = {c.field for c in billing.ledger(store, MSISDN)}
    news = next(f for f in fields if f.startswith("NEWS:"))
    store.redis.hdel(store.keys.ledger(MSISDN), news)
    store.redis.hset(store.keys.ledger(OTHER), "VIDEO:2026-01", json.dumps({"fen": 1500, "at": 1767225600000, "run": "forged"}))
    bad = cli(cfg, "billing", "verify")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{OTHER} VIDEO:2026-01: charge in the ledger has no audit entry" in bad.stdout
    assert f"{MSISDN} {news}: charge in the audit stream is missing from the ledger" in bad.stdout
    assert f"{MSISDN} {news}: missed charge" in bad.stdout

