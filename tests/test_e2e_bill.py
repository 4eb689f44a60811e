"""End to end: CXZD (the itemized bill) through the simulator, against the ledger.

Orders arrive on the event stream (as `smsbot order` writes them), a cancel in the grace period
(TD), a billing run, on-demand uses (as `smsbot use` writes them), one charge made in the previous
month; then CXZD / 账单 / ｃｘｚｄ from the handset. The figures must be exactly the ledger's as
`smsbot billing ledger --json` prints them (a separate process), one line per service, the
total, month by month; another subscriber never sees them.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict

from smsbot import billing
from .helpers import wait_until
from commands.orders.events import write_use
from smsbot.periods import format_time, period_by_label, period_of, zone

from .billing_steps import mid_last_month, order, run_billing
from .conftest import World, cli, write_config

MSISDN = "13800138000"
OTHER = "13900139000"
NOBODY = "13700137000"
GRACE_S = 60
LINE = re.compile(r"^(\S+) (?:(\d+)次 )?(\d+\.\d{2})元$")


def ledger_json(cfg, msisdn: str) -> list[dict]:
    res = cli(cfg, "billing", "ledger", msisdn, "--json")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def month_of_ledger(world: World, rows: list[dict], label: str) -> dict[str, tuple[int, int]]:
    """service -> (charges, fen) of the ledger rows whose time falls in month `label`."""
    p = period_by_label(label, zone(world.settings.billing.timezone))
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if p.start_ms <= r["at"] < p.end_ms:
            out[r["service"]][0] += 1
            out[r["service"]][1] += r["fen"]
    return {k: (n, fen) for k, (n, fen) in out.items()}


def parse_bill(world: World, text: str) -> tuple[dict[str, tuple[int, int]], int]:
    """The SMS -> (service code -> (count shown or 1, fen), total fen)."""
    by_name = {s.name: s.code for s in world.settings.services}
    lines, total = {}, None
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            lines[by_name[m.group(1)]] = (int(m.group(2) or 1), round(float(m.group(3)) * 100))
        t = re.search(r"合计：(\d+\.\d{2})元", line)
        if t:
            total = round(float(t.group(1)) * 100)
    assert total is not None, text
    return lines, total


def test_cxzd_is_the_ledger_month_by_month_and_only_the_subscribers_own(make_settings, make_world, tmp_path):
    grace = {"commands.orders.grace_seconds": {"monthly": GRACE_S, "on-demand": GRACE_S}}
    tz = zone(make_settings(**grace).billing.timezone)
    clock = mid_last_month(tz)

    def now_ms() -> int:
        return int(clock() * 1000)

    w = make_world(clock=clock, **grace)
    phone, other, nobody = w.handset(MSISDN), w.handset(OTHER), w.handset(NOBODY)
    now = now_ms()
    this = period_of(now, tz)
    assert now - this.start_ms >= 14 * 86400_000
    prev = period_of(this.start_ms - 1, tz)

    # the previous month: WEATHER ordered and charged by a run then
    order(w, MSISDN, "WEATHER", at_ms=prev.start_ms + 3600_000)
    # this month: NEWS (operator), VIDEO and RING ordered past their grace, MUSIC in its grace
    w.subscribe(MSISDN, "NEWS")
    order(w, MSISDN, "VIDEO", at_ms=now - 2 * GRACE_S * 1000)
    order(w, MSISDN, "RING", at_ms=now - 2 * GRACE_S * 1000)
    assert len(phone.expect(3)) == 3  # three charge reminders
    order(w, MSISDN, "MUSIC", at_ms=now_ms())
    assert "彩铃音乐包" in phone.expect(1)[0]["text"]
    assert "不会收取任何费用" in phone.ask("TD")  # cancelled in the grace period: never charged
    w.subscribe(OTHER, "GAME")

    run_billing(w, prev.start_ms + 2 * 86400_000)  # the previous month's run: WEATHER
    cfg = write_config(w, tmp_path)
    for i, at in enumerate((now - 90_000, now - 30_000, now - 20_000)):  # the first is inside RING's grace: free
        write_use(w.settings, w.bot.store.redis, MSISDN, "RING", at, f"use-bill-{i}-{time.time_ns()}")
    assert wait_until(lambda: sum(1 for c in billing.ledger(w.bot.store, MSISDN) if c.use) == 2, 10)
    run_billing(w, now_ms())  # this month's run: NEWS, VIDEO, WEATHER; GAME for the other subscriber

    rows = ledger_json(cfg, MSISDN)
    expected = month_of_ledger(w, rows, this.label)
    assert set(expected) == {"NEWS", "VIDEO", "WEATHER", "RING"}, rows  # MUSIC: cancelled in grace
    assert expected["RING"] == (2, 400)

    # this month, asked three ways: the same bill, the ledger's figures exactly, in parts
    phone.send("CXZD")
    msg = phone.expect(1)[0]
    assert msg["parts"] >= 2, msg  # a long bill arrives as concatenated parts, whole
    text = msg["text"]
    assert text.startswith(f"尊敬的客户，您{int(this.label[:4])}年{int(this.label[5:])}月的扣费明细（截至")
    lines, total = parse_bill(w, text)
    assert lines == expected, (text, rows)
    assert total == sum(fen for _n, fen in expected.values())
    assert "彩铃点播 2次 4.00元" in text and "手机早晚报 3.00元" in text and "视频会员包月 15.00元" in text
    assert "彩铃音乐包" not in text and "游戏畅玩包" not in text  # cancelled in grace; another subscriber's
    for variant in ("ｃｘｚｄ", "账单", " cxzd "):
        again = phone.ask(variant)
        assert parse_bill(w, again) == (lines, total), (variant, again)
    # the same rule in Python (smsbot.billing.statement) agrees
    st = billing.statement(billing.ledger(w.bot.store, MSISDN), this)
    assert {s.code: (s.charges, s.fen) for s in st} == expected

    # the previous month: only WEATHER, charged by that month's run
    y, m = prev.label.split("-")
    for ask in (f"CXZD {y}{m}", f"CXZD {y}-{m}", f"账单{y}年{int(m)}月"):
        old = phone.ask(ask)
        assert old.startswith(f"尊敬的客户，您{int(y)}年{int(m)}月的扣费明细：") and "截至" not in old, old
        assert parse_bill(w, old) == (month_of_ledger(w, rows, prev.label), 200) == ({"WEATHER": (1, 200)}, 200)

    # another subscriber sees only their own; one without charges is told so
    theirs = other.ask("CXZD")
    assert parse_bill(w, theirs) == ({"GAME": (1, 1000)}, 1000)
    assert "视频" not in theirs and "天气" not in theirs
    assert "暂无增值业务扣费记录" in nobody.ask("CXZD")
    assert "暂无增值业务扣费记录" in phone.ask(f"CXZD {int(y) - 1}{m}")

    # a month to come, and an argument that is not a month
    nxt = period_of(this.end_ms, tz).label.replace("-", "")
    assert "尚未产生" in phone.ask(f"CXZD {nxt}")
    assert "如：CXZD 202611" in phone.ask("CXZD 13")
    assert billing.verify(w.settings, w.bot.store).ok


def test_cxzd_in_english_and_how_the_ledger_cli_prints_it(make_settings, make_world, tmp_path):
    clock = mid_last_month(zone(make_settings().billing.timezone))
    w = make_world(clock=clock, short_codes=[{"code": "10086", "language": "en", "commands": ["subscriptions", "orders", "bill", "help"]}])
    w.subscribe(MSISDN, "VIDEO", "NEWS")
    at = int(clock() * 1000)
    run_billing(w, at)
    tz = zone(w.settings.billing.timezone)
    text = w.handset(MSISDN).ask("cxzd")
    month = format_time(at, tz, "%B %Y")
    assert text.startswith(f"Your charges for {month} (as of "), text
    assert "Video monthly 15.00 yuan" in text and "Morning and evening news 3.00 yuan" in text
    assert text.endswith("Total: 18.00 yuan")
    res = cli(write_config(w, tmp_path), "billing", "ledger", MSISDN)
    assert res.returncode == 0 and "total\t18.00 yuan, 2 charge(s)" in res.stdout, res.stdout
    assert "CXZD this month's bill" in w.handset(MSISDN).ask("HELP")
