"""The SMPP session over real TCP: bind modes, refused binds and backoff, enquire_link, clean stop via the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .helpers import wait_until
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .conftest import REPO, World, base_config

MSISDN = "13800138000"


def test_receiver_plus_transmitter_binds(make_world):
    w = make_world(**{"smsc.bind_mode": "receiver+transmitter"})
    assert wait_until(lambda: w.sim.stats()["binds"] == 2, 5)
    w.subscribe(MSISDN, "VIDEO")
    assert "视频会员包月" in w.handset(MSISDN).ask("0000")


def test_refused_bind_is_retried_with_backoff(make_settings):
    settings = make_settings()
    sim = SimSmsc.from_settings(settings).start()
    w = World(settings, sim)
    try:
        wrong = settings.model_copy(update={"smsc": settings.smsc.model_copy(update={"password": "wrong"})})
        from smsbot.app import Bot

        bot = Bot(w.bot_settings(wrong)).start()
        w.bots.append(bot)
        assert wait_until(lambda: sim.stats()["bind_failures"] >= 3, 10), sim.stats()
        # the bot counts a reconnect after it has read the refusal and closed the link, which can be
        # just after the simulator counted the refused bind: await it rather than read it once
        assert wait_until(lambda: bot.transport.reconnects >= 3, 5), bot.transport.reconnects
        assert not bot.transport.bound.is_set()
    finally:
        w.stop()


def test_enquire_link_keeps_idle_link_alive(make_settings):
    settings = make_settings(**{"smsc.enquire_link_interval": 0.3, "smsc.response_timeout": 1})
    sim = SimSmsc.from_settings(settings).start()
    w = World(settings, sim)
    try:
        bot = w.start_bot()
        # idle for several enquire_link rounds, well past one response timeout
        assert wait_until(lambda: sim.stats()["enquire_links_received"] >= 5, 15), sim.stats()
        assert bot.transport.reconnects == 0, "an idle but healthy link must not be dropped"
        assert sim.stats()["binds"] == 1
        w.subscribe(MSISDN, "NEWS")
        assert "手机早晚报" in w.handset(MSISDN).ask("0000")
    finally:
        w.stop()


def _write_config(tmp_path: Path, redis_url: str, sim: SimSmsc) -> Path:
    raw = base_config(redis_url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return cfg


def _smsbot(*args: str, cfg: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args], capture_output=True, text=True, timeout=60, **kw)


def test_cli_run_serves_and_stops_cleanly_on_sigterm(redis_server, tmp_path):
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    try:
        cfg = _write_config(tmp_path, redis_server.url, sim)
        assert _smsbot("subs", "add", MSISDN, "VIDEO", cfg=cfg).returncode == 0
        listed = _smsbot("subs", "list", MSISDN, cfg=cfg)
        assert listed.stdout.startswith("VIDEO\tactive\t15.00")
        proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
            reply = Handset(sim.control_url, MSISDN)
            reply.send("10086", "0000")
            msgs = []
            deadline = time.monotonic() + 10
            while not msgs and time.monotonic() < deadline:
                msgs = reply.collect(1)
            assert msgs and "视频会员包月" in msgs[0]["text"]
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert wait_until(lambda: sim.stats()["binds"] == 0, 5)
        assert '"event": "smsc_unbound"' in err
        # JSON logs off a terminal, numbers masked, password never logged
        assert '"event": "mo"' in err and "138****8000" in err and MSISDN not in err
        assert "secret" not in err
    finally:
        sim.stop()


def test_cli_handset_and_catalog(world: World, tmp_path):
    cfg = tmp_path / "c.yaml"
    raw = base_config(world.settings.redis.url, tmp_path / "var")
    raw["redis"]["key_prefix"] = world.settings.redis.key_prefix
    raw["simulator"]["control_port"] = world.sim.control_port
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    world.subscribe(MSISDN, "MUSIC")
    res = _smsbot("handset", MSISDN, "--to", "10086", "--send", "0000", "--wait", "2", cfg=cfg)
    assert res.returncode == 0, res.stderr
    assert "1. 彩铃音乐包 5元/月" in res.stdout
    # nothing new: a second collect shows nothing twice
    res = _smsbot("handset", MSISDN, "--wait", "0.5", cfg=cfg)
    assert "彩铃音乐包" not in res.stdout
    cat = _smsbot("catalog", "list", cfg=cfg)
    assert cat.stdout.splitlines()[0].startswith("VIDEO\t15.00\tmonthly")
    bad = _smsbot("subs", "add", "12ab", "VIDEO", cfg=cfg)
    assert bad.returncode != 0 and "not a subscriber number" in bad.stderr
    bad = _smsbot("subs", "add", MSISDN, "NOPE", cfg=cfg)
    assert bad.returncode != 0 and "unknown service code" in bad.stderr


def test_demo_shows_menu_and_cancels(tmp_path):
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["data_dir"] = str(tmp_path / "var")
    raw["simulator"].update({"smpp_port": 0, "control_port": 0})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    try:
        res = _smsbot("demo", "--send", "0000", "--send", "2", "--wait", "2", cfg=cfg)
        assert res.returncode == 0, res.stderr
        assert "1. 视频会员包月 15元/月" in res.stdout
        assert "您已成功退订彩铃音乐包" in res.stdout
    finally:
        _smsbot("redis", "stop", cfg=cfg)
