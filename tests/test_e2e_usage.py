"""End to end: usage reports on the event stream -> bot (consumer group) -> Lua -> outbox -> SMPP ->
handset; CXLL over SMPP; the `smsbot usage` CLI as a separate process against a running bot.

Reports are written exactly as the CLI writes them (`commands.usage.event_fields` + XADD); the
bot applies them in its background consumer thread, so tests wait at the handset.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from commands import usage
from commands.usage import usage_settings

from .conftest import World, cli, write_config

MSISDN = "13800138000"
MB = usage.MB
QUOTA = 1024  # the default plan 4G_1GB in config.yaml: thresholds 10, 5, 0 MB


def cycle_now(world: World) -> str:
    return usage.current_cycle(world.settings)


def previous_cycle(world: World) -> str:
    y, m = map(int, cycle_now(world).split("-"))
    return f"{y - 1}-12" if m == 1 else f"{y}-{m - 1:02d}"


def report(world: World, used_mb: float, *, msisdn: str = MSISDN, cycle: str | None = None, plan: str | None = None) -> str:
    store = world.bot.store
    fields = usage.event_fields(msisdn, int(used_mb * MB), cycle or cycle_now(world), plan, source="test")
    return store.redis.xadd(store.keys.usage_events(), fields).decode()


def wait_applied(world: World, ids: list[str], timeout: float = 10.0) -> None:
    """Until the consumer group has acknowledged every id (the reports are applied)."""
    store = world.bot.store
    stream = store.keys.usage_events()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = store.redis.xinfo_groups(stream)
        group = next((g for g in info if g["name"] in (b"usage", "usage")), None)
        last = group and group["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else last
        if group and group["pending"] == 0 and last and _id(last) >= max(_id(i) for i in ids):
            return
        time.sleep(0.02)  # poll interval of a condition awaited (the consumer group's progress)
    raise AssertionError(f"reports not applied within {timeout}s")


def _id(entry_id: str) -> tuple[int, int]:
    a, b = entry_id.split("-")
    return int(a), int(b)


def texts(msgs: list[dict]) -> list[str]:
    return [m["text"] for m in msgs]


def test_crossing_10_5_0_sends_exactly_three_alerts_in_order(world: World):
    phone = world.handset(MSISDN)
    ids = [report(world, mb) for mb in (100, 1000, 1015, 1016, 1020, 1022.5, 1024, 1100)]
    got = texts(phone.expect(3))
    wait_applied(world, ids)
    got += texts(phone.quiet())
    assert len(got) == 3, got
    assert "您的4G套餐本月剩余流量9.0MB" in got[0] and "已使用1015.0MB" in got[0] and "0.29元/MB" in got[0]
    assert "剩余流量4.0MB" in got[1] and "已使用1020.0MB" in got[1]
    assert "1024MB流量已用完" in got[2] and "0.29元/MB" in got[2]
    assert all(m.startswith("尊敬的客户，截至") for m in got)


def test_duplicates_and_reordered_reports_send_nothing_extra(world: World):
    phone = world.handset(MSISDN)
    wait_applied(world, [report(world, 500)])
    ids = [report(world, 1024 - 1, cycle=previous_cycle(world))]  # late report of the past cycle: ignored
    # every report three times, several late (an older total arriving after a newer one)
    for mb in (1015, 1000, 1015, 1020, 1016, 1012, 1020, 1024, 1018, 1024, 1023):
        for _ in range(3):
            ids.append(report(world, mb))
    got = texts(phone.expect(3))
    wait_applied(world, ids)
    got += texts(phone.quiet())
    assert len(got) == 3, got
    assert "剩余流量9.0MB" in got[0] and "剩余流量4.0MB" in got[1] and "流量已用完" in got[2]
    state = usage_state(world)
    assert state["used"] == str(1024 * MB) and state["cycle"] == cycle_now(world)
    assert sorted(k for k in state if k.startswith("alerted:")) == [
        "alerted:4G_1GB:0", f"alerted:4G_1GB:{10 * MB}", f"alerted:4G_1GB:{5 * MB}"]


def test_two_instances_never_alert_a_threshold_twice(world: World):
    """Two bots share the consumer group, so reports are applied concurrently and in no fixed order:
    a threshold may be skipped (a later total applied first is a jump), never repeated."""
    world.start_bot()
    phones = {n: world.handset(n) for n in ("13800138000", "13800138001", "13800138002")}
    ids = []
    for mb in (1000, 1015, 1015, 1020, 1012, 1020, 1024, 1016, 1024, 1030, 1030):
        for n in phones:
            for _ in range(2):
                ids.append(report(world, mb, msisdn=n))
    wait_applied(world, ids)
    consumers = {c["name"] for c in world.bot.store.redis.xinfo_consumers(world.bot.store.keys.usage_events(), "usage")}
    for n, phone in phones.items():
        got = texts(phone.quiet())
        assert 1 <= len(got) <= 3, (n, got)
        # the 0 MB alert always comes; 10 and 5 MB at most once each (two senders: order not fixed)
        kinds = ["0" if "流量已用完" in m else "10" if ("剩余流量9.0MB" in m or "剩余流量8.0MB" in m) else "5" if "剩余流量4.0MB" in m else m for m in got]
        assert "0" in kinds and len(set(kinds)) == len(kinds) and set(kinds) <= {"0", "5", "10"}, (n, got)
    assert len(consumers) == 2, consumers  # both instances read from the group


def usage_state(world: World, msisdn: str = MSISDN) -> dict[str, str]:
    store = world.bot.store
    return {k.decode(): v.decode() for k, v in store.redis.hgetall(store.keys.usage(msisdn)).items()}


def test_the_same_reports_again_send_nothing(world: World):
    phone = world.handset(MSISDN)
    ids = [report(world, mb) for mb in (1015, 1020)]
    assert len(phone.expect(2)) == 2
    wait_applied(world, ids)
    # replay the whole history (as after a restore of the stream): nothing new
    ids = [report(world, mb) for mb in (1015, 1020, 1000, 1020)]
    wait_applied(world, ids)
    assert phone.quiet() == []


def test_a_big_jump_sends_one_alert_for_the_lowest_threshold(world: World):
    phone = world.handset(MSISDN)
    ids = [report(world, 50), report(world, 1030)]
    got = texts(phone.expect(1))
    wait_applied(world, ids)
    got += texts(phone.quiet())
    assert len(got) == 1, got
    assert "1024MB流量已用完" in got[0] and "已使用1030.0MB" in got[0]
    # a jump from above 10 MB left to 3 MB left: one alert, the 5 MB one
    phone2 = world.handset("13800138001")
    ids = [report(world, 1000, msisdn="13800138001"), report(world, 1021, msisdn="13800138001")]
    got = texts(phone2.expect(1))
    wait_applied(world, ids)
    got += texts(phone2.quiet())
    assert len(got) == 1 and "剩余流量3.0MB" in got[0], got


def test_plan_thresholds_from_config(world: World):
    """The data card plan overrides the thresholds: 50 MB and 0 MB, and its own rate."""
    phone = world.handset(MSISDN)
    ids = [report(world, mb, plan="CARD_10GB") for mb in (10000, 10185, 10235, 10240)]
    got = texts(phone.expect(2))
    wait_applied(world, ids)
    got += texts(phone.quiet())
    assert len(got) == 2, got
    assert "流量卡本月剩余流量5.0MB" in got[0] and "0.1元/MB" in got[0]  # 55 MB left was not yet 50
    assert "10240MB流量已用完" in got[1]


@pytest.mark.parametrize("keyword", ["CXLL", "cxll", "ＣＸＬＬ", " CxLl "])
def test_cxll_before_and_after(world: World, keyword: str):
    phone = world.handset(MSISDN)
    before = phone.ask(keyword)
    assert "没有您的流量套餐" in before
    wait_applied(world, [report(world, 95)])
    after = phone.ask(keyword)
    assert after == "尊敬的客户，您的4G套餐" + period(world) + "已使用流量95.0MB，剩余929.0MB，套餐内共1024MB。【中国移动】"
    wait_applied(world, [report(world, 1000.25)])
    assert "已使用流量1000.3MB，剩余23.7MB" in phone.ask(keyword)


@pytest.mark.parametrize("split", ["udh8", "sar"])
def test_cxll_as_a_long_mo_in_shuffled_parts(world: World, split: str):
    """The reassembled MO's script gets the parts key AND the declared usage key."""
    wait_applied(world, [report(world, 95)])
    phone = world.handset(MSISDN)
    info = phone.h._request("POST", "/mo", {"from": MSISDN, "to": "10086", "text": "CXLL" + " " * 300, "split": split, "shuffle": True})
    assert info["parts"] >= 2
    assert "已使用流量95.0MB，剩余929.0MB" in phone.expect(1)[0]["text"]
    store = world.bot.store
    assert not [k for k in store.redis.keys(f"{store.keys.prefix}:*:parts:*")]  # the parts were deleted


def test_cxll_over_quota_and_one_decimal(world: World):
    phone = world.handset(MSISDN)
    ids = [report(world, 1030.06)]
    phone.expect(1)  # the exhausted alert
    wait_applied(world, ids)
    reply = phone.ask("CXLL")
    assert "已使用流量1030.1MB，套餐内1024MB已用完，剩余0MB，超出6.1MB按0.29元/MB计费" in reply


def test_new_cycle_starts_clean(world: World):
    phone = world.handset(MSISDN)
    old = previous_cycle(world)
    ids = [report(world, 1020, cycle=old)]
    assert "剩余流量4.0MB" in texts(phone.expect(1))[0]
    wait_applied(world, ids)
    # the new cycle: nothing used yet, then the 10 MB alert again
    assert "已使用流量0.0MB，剩余1024.0MB" in phone.ask("CXLL")
    ids = [report(world, 1015), report(world, 1024, cycle=old)]  # plus a late report of the old cycle
    got = texts(phone.expect(1))
    wait_applied(world, ids)
    got += texts(phone.quiet())
    assert len(got) == 1 and "剩余流量9.0MB" in got[0], got
    assert "已使用流量1015.0MB" in phone.ask("CXLL")


def test_help_lists_cxll(world: World):
    assert "CXLL 查询本月流量使用情况" in world.handset(MSISDN).ask("HELP")


def test_english_short_code(make_world):
    w = make_world(short_codes=[{"code": "10086", "language": "en", "commands": ["subscriptions", "usage", "help"]}])
    phone = w.handset(MSISDN)
    assert "no data plan" in phone.ask("cxll")
    report(w, 1019.5)
    alert = phone.expect(1)[0]["text"]
    assert "4.5 MB of your 4G plan data is left this month (1019.5 of 1024 MB used)" in alert
    assert "0.29 yuan/MB" in alert


# -- the CLI, as a separate process (helpers in conftest) -------------------------------------------


def test_cli_refuses_bad_sizes_and_unknown_plans(world: World, tmp_path: Path):
    cfg = write_config(world, tmp_path)
    store = world.bot.store
    for args, message in [
        (["--used", "95XB"], "not a size"),
        (["--used", "95"], "needs a unit"),
        (["--used", "-5MB"], "not a size"),
        (["--used", "1.5B"], "whole number"),
        (["--used", "100TB"], "too large"),
        (["--used", "95MB", "--plan", "NOSUCH"], "unknown plan 'NOSUCH'"),
        (["--used", "95MB", "--cycle", "2026-13"], "YYYY-MM"),
    ]:
        res = cli(cfg, "usage", MSISDN, *args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert message in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    res = cli(cfg, "usage", "12ab", "--used", "95MB")
    assert res.returncode == 2 and "not a subscriber number" in res.stderr
    assert store.redis.xlen(store.keys.usage_events()) == 0


def test_cli_report_reaches_the_running_bot_and_show(world: World, tmp_path: Path):
    cfg = write_config(world, tmp_path)
    phone = world.handset(MSISDN)
    res = cli(cfg, "usage", MSISDN, "--used", "1015MB")
    assert res.returncode == 0, res.stderr
    assert "1015.0MB" in res.stdout and "4G_1GB" in res.stdout and cycle_now(world) in res.stdout
    alert = phone.expect(1)[0]["text"]
    assert "剩余流量9.0MB" in alert
    res = cli(cfg, "usage", MSISDN, "--used", "10190MB", "--plan", "card_10gb", "--cycle", "2099-01", "--force")  # far ahead: forced
    assert res.returncode == 0, res.stderr
    assert "流量卡本月剩余流量50.0MB" in phone.expect(1)[0]["text"]  # a new cycle, the card's 50 MB threshold
    shown = cli(cfg, "usage", MSISDN)
    assert shown.returncode == 0, shown.stderr
    assert "2099-01" in shown.stdout and "CARD_10GB" in shown.stdout


def period(world: World) -> str:
    now = datetime.now(ZoneInfo(usage_settings(world.settings).timezone))
    return f"{now.year}年{now.month}月"
