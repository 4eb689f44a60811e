"""Several bot instances on one Redis, each with its own bind; delivery receipts update MT records."""

from __future__ import annotations

import subprocess
import sys

import yaml

from .helpers import wait_until

from .conftest import World, base_config
from .state import subs_state


def test_two_instances_share_conversations(world: World):
    second = world.start_bot()
    assert wait_until(lambda: world.sim.stats()["binds"] == 2, 5)
    numbers = [f"1380000{i:04d}" for i in range(6)]
    for n in numbers:
        world.subscribe(n, "VIDEO", "MUSIC")
    phones = [world.handset(n) for n in numbers]
    for p in phones:
        assert "1. 视频会员包月" in p.ask("0000")
    for p in phones:
        assert "您已成功退订彩铃音乐包" in p.ask("2")
    for n in numbers:
        assert subs_state(world, n) == {"VIDEO": "active", "MUSIC": "cancelled"}
    # the simulator spread the MOs over both binds, so menus opened on one were answered on the other
    assert world.bot.mo_count > 0 and second.mo_count > 0
    assert world.bot.mo_count + second.mo_count == 2 * len(numbers)
    for p in phones:
        assert p.quiet() == [], "no reply twice"


def test_delivery_receipt_updates_mt_record(make_world, tmp_path):
    w = make_world(**{"smsc.registered_delivery": 1})
    w.subscribe("13800138000", "VIDEO")
    phone = w.handset("13800138000")
    phone.send("0000")
    msg = phone.expect(1)[0]
    mid = msg["message_ids"][0]
    store = w.bot.store
    assert wait_until(lambda: [r.get("state") for r in store.mt_records(mid)] == ["DELIVRD"], 10), store.mt_records(mid)
    (rec,) = store.mt_records(mid)
    assert rec["to"] == "13800138000" and rec["tpl"] == "subscriptions.menu" and rec["correlation"]
    cfg = tmp_path / "c.yaml"
    raw = base_config(w.settings.redis.url, tmp_path / "var")
    raw["redis"]["key_prefix"] = w.settings.redis.key_prefix
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    shown = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "mt", "show", mid], capture_output=True, text=True)
    assert shown.returncode == 0 and "state\tDELIVRD" in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "mt", "show", "nope"], capture_output=True, text=True)
    assert missing.returncode == 1
