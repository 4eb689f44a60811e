"""Lifecycle through the real CLI: daemonize, pidfile, status/stop, SIGHUP reload, SIGTERM drain,
second signal, stale pidfile; metrics and health endpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from .helpers import wait_until
from smsbot import config, connections, queue_lag
from smsbot.simulator.smsc import SimSmsc

from .config_files import make_raw, write_cfg
from .conftest import Phone
from smsbot.simulator.handset import Handset
from smsbot.reload import plan_reload

MSISDN = "13800138000"


def cli(*args: str, cfg: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args], capture_output=True, text=True, timeout=timeout)


def test_daemon_status_reload_stop(redis_server, tmp_path):
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    pidfile = tmp_path / "run" / "smsbot.pid"
    pidfile.parent.mkdir()  # smsbot creates no directory for a path it is given
    logfile = tmp_path / "smsbot.log"
    try:
        raw = make_raw(redis_server.url, tmp_path, sim)
        cfg = write_cfg(tmp_path / "config.yaml", raw)
        assert cli("status", "--pidfile", str(pidfile), cfg=cfg).returncode == 3
        res = cli("run", "--daemon", "--pidfile", str(pidfile), "--log-file", str(logfile), cfg=cfg)
        assert res.returncode == 0, res.stderr
        assert wait_until(lambda: sim.stats()["binds"] == 1, 15), logfile.read_text() if logfile.exists() else "no log"
        st = cli("status", "--pidfile", str(pidfile), cfg=cfg)
        assert st.returncode == 0 and "running (pid" in st.stdout
        pid = int(pidfile.read_text())
        assert pid != os.getpid()
        # a second copy on the same pidfile is refused
        again = cli("run", "--daemon", "--pidfile", str(pidfile), cfg=cfg)
        assert again.returncode == 1 and "already running" in again.stderr
        assert cli("subs", "add", MSISDN, "VIDEO", cfg=cfg).returncode == 0
        phone = Phone(Handset(sim.control_url, MSISDN))
        assert "尊敬的客户，您已订购的包月业务如下" in phone.ask("0000")

        # SIGHUP with a good config: new template, same bind
        binds_before = sim.stats()["binds_total"]
        raw["templates"] = {"zh-CN": {"subscriptions.header": "已重新加载的菜单："}}
        write_cfg(cfg, raw)
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: '"event": "reloaded"' in logfile.read_text(), 10)
        assert "已重新加载的菜单" in phone.ask("0000")
        # SIGHUP with a bad config: refused, logged, old config stays
        cfg.write_text("smsc: [this is not valid\n", encoding="utf-8")
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: '"event": "reload_refused"' in logfile.read_text(), 10)
        assert "已重新加载的菜单" in phone.ask("0000")
        assert sim.stats()["binds_total"] == binds_before, "reload must not drop the bind"
        # SIGHUP with a template that can never be rendered: refused the same way, naming it
        write_cfg(cfg, {**raw, "templates": {"zh-CN": {"subscriptions.header": "菜单{未闭合"}}})
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: logfile.read_text().count('"event": "reload_refused"') == 2, 10)
        assert re.search(r"templates\.zh-CN\.subscriptions\.header \(line \d+\): not a valid template", logfile.read_text())
        assert "已重新加载的菜单" in phone.ask("0000")
        write_cfg(cfg, raw)

        stopped = cli("stop", "--pidfile", str(pidfile), cfg=cfg)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not pidfile.exists()
        assert wait_until(lambda: sim.stats()["binds"] == 0, 5)
        assert cli("status", "--pidfile", str(pidfile), cfg=cfg).returncode == 3
        text = logfile.read_text()
        assert '"event": "smsc_unbound"' in text and "secret" not in text
        assert stat.S_IMODE(logfile.stat().st_mode) == 0o600, "the daemon's log is its owner's only"
    finally:
        if pidfile.exists() and pidfile.read_text().strip():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sim.stop()


def test_bundled_redis_data_is_its_owners_only(redis_server):
    """The bundled Redis's directory (its AOF holds every subscriber's numbers, subscriptions and
    complaints) is 0700, the AOF and log 0600: another user on the machine reads nothing."""
    c = redis.Redis(unix_socket_path=str(redis_server.socket))
    c.set("smsbot-test:private", "1")
    c.close()
    assert stat.S_IMODE(redis_server.directory.stat().st_mode) == 0o700
    files = [f for f in redis_server.directory.iterdir() if f.suffix in (".aof", ".log")]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), \
        {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files}


def test_stale_pidfile_is_taken_over(redis_server, tmp_path):
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    pidfile = tmp_path / "smsbot.pid"
    pidfile.write_text("999999\n")  # a process that died without cleaning up
    try:
        cfg = write_cfg(tmp_path / "config.yaml", make_raw(redis_server.url, tmp_path, sim))
        st = cli("status", "--pidfile", str(pidfile), cfg=cfg)
        assert st.returncode == 3 and "stale" in st.stdout
        proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run", "--pidfile", str(pidfile)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
            assert int(pidfile.read_text()) == proc.pid
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
            assert proc.returncode == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        sim.stop()


def test_second_signal_stops_at_once_and_nothing_is_lost(redis_server, tmp_path):
    """Replies queued behind a 4 TPS limit: a double SIGTERM leaves them in Redis; the next start sends them, none twice."""
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    try:
        raw = make_raw(redis_server.url, tmp_path, sim)
        raw["smsc"].update({"max_tps": 4, "drain_timeout": 30})
        raw["dispatch"]["redelivery_guard_seconds"] = 0
        cfg = write_cfg(tmp_path / "config.yaml", raw)
        phones = [Phone(Handset(sim.control_url, f"1390000{i:04d}")) for i in range(8)]
        first_log = tmp_path / "first.log"
        with open(first_log, "w") as log_fh:
            proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                    stdout=subprocess.DEVNULL, stderr=log_fh, text=True)
        try:
            assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
            ids = [p.send("帮助") for p in phones]
            assert all(sim.wait_mo(i, timeout=10)["state"] == "delivered" for i in ids)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # the second signal comes while the first one's drain runs
            assert wait_until(lambda: '"event": "smsc_draining"' in first_log.read_text(), 10), first_log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0, first_log.read_text()
            assert time.monotonic() - started < 10, "a second signal must not wait for the 30 s drain"
        finally:
            if proc.poll() is None:
                proc.kill()
        received = [m for p in phones for m in p.h.collect(0)]
        assert len(received) < len(phones), "the test needs replies still queued at the forced stop"
        proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        store = connections.open_store(config.from_dict(raw))
        try:
            # entries read by the dead instance are claimed after the idle time; the rest right away;
            # then nothing more is on its way (no MO queued, no reply left in Redis)
            def all_sent() -> bool:
                received.extend(m for p in phones for m in p.h.collect(0))
                return sim.stats()["mo_queued"] == 0 and queue_lag.read(store).depth == 0
            assert wait_until(all_sent, 90), f"{len(received)} of {len(phones)} replies arrived"
            received.extend(m for p in phones for m in p.h.collect(0))
            assert sorted(m["to"] for m in received) == sorted(p.msisdn for p in phones), "each reply once"
        finally:
            store.close()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
    finally:
        sim.stop()


def test_metrics_and_healthz(make_settings):
    from .conftest import World

    settings = make_settings(**{"metrics.port": 0})
    sim = SimSmsc.from_settings(settings).start()
    w = World(settings, sim)
    try:
        import socket as _s

        with _s.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        bot = w.start_bot(settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"port": port})}))
        w.subscribe(MSISDN, "VIDEO")
        w.handset(MSISDN).ask("0000")
        assert wait_until(lambda: bot.sender.idle, 5)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        assert health == {"ok": True, "smsc_bound": True, "redis": True}
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'smsbot_mo_total{command="subscriptions",outcome="menu_sent"} 1.0' in text
        assert 'smsbot_mt_total{template="subscriptions.menu"} 1.0' in text
        assert "smsbot_smsc_bound 1.0" in text
        assert "smsbot_mo_batch_seconds_bucket" in text and "smsbot_outbox_depth" in text
        sim.stop()
        assert wait_until(lambda: not bot.transport.bound.is_set(), 10)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
            raise AssertionError("healthz must fail when the SMSC is not bound")
        except urllib.error.HTTPError as e:
            assert e.code == 503
            assert json.loads(e.read())["smsc_bound"] is False
    finally:
        w.stop()


def test_hot_counters_lose_nothing_when_scraped_while_counting():
    """MO/MT counts are plain dict adds on the transport thread and reach Prometheus at scrape
    time; a scrape racing the counting thread must neither lose nor double an increment."""
    import threading

    from smsbot.metrics import Metrics

    m = Metrics()
    done = threading.Event()

    def count() -> None:
        for i in range(200_000):
            m.mt_hot.add(("menu",) if i % 2 else (f"t{i % 7}",))
        done.set()

    t = threading.Thread(target=count)
    t.start()
    while not done.is_set():
        m.render()
    t.join()
    text = m.render().decode()
    total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("smsbot_mt_total{"))
    assert total == 200_000
    assert 'smsbot_mt_total{template="menu"} 100000.0' in text


def test_sighup_logs_one_line_saying_which_keys_took_effect_and_which_need_a_restart(redis_server, tmp_path):
    """Reload: templates, dispatch.* and log.* take effect at once; smsc.*, metrics.* need a restart
    (kept at their running values); simulator.* is not used by `run`. One `reloaded` line lists them."""
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    logfile = tmp_path / "bot.log"
    try:
        raw = make_raw(redis_server.url, tmp_path, sim)
        cfg = write_cfg(tmp_path / "config.yaml", raw)
        with open(logfile, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"], stdout=subprocess.DEVNULL, stderr=err)
        try:
            assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
            assert cli("subs", "add", MSISDN, "VIDEO", cfg=cfg).returncode == 0
            phone = Phone(Handset(sim.control_url, MSISDN))
            assert "尊敬的客户，您已订购的包月业务如下" in phone.ask("0000")
            assert "138****8000" in logfile.read_text() and MSISDN not in logfile.read_text()
            binds = sim.stats()["binds_total"]

            raw["templates"] = {"zh-CN": {"subscriptions.header": "重新加载后的菜单："}}
            raw["dispatch"]["reassembly_timeout_seconds"] = 120
            raw["log"]["mask_msisdn"] = False
            raw["smsc"]["window"] = raw["smsc"].get("window", 10) + 5
            raw["metrics"]["port"] = 19999
            raw["simulator"]["control_port"] = 18775
            write_cfg(cfg, raw)
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: '"event": "reloaded"' in logfile.read_text(), 10), logfile.read_text()
            lines = [json.loads(ln) for ln in logfile.read_text().splitlines() if '"reload' in ln]
            assert len(lines) == 1, lines
            line = lines[0]
            assert line["level"] == "warning"
            assert sorted(line["applied"]) == ["dispatch.reassembly_timeout_seconds", "log.mask_msisdn", "templates.zh-CN.subscriptions.header"]
            assert line["restart_needed"] == ["metrics.port", "smsc.window"]
            assert line["not_used_by_run"] == ["simulator.control_port"]

            assert "重新加载后的菜单" in phone.ask("0000")  # templates: in effect
            assert wait_until(lambda: f'"msisdn": "{MSISDN}"' in logfile.read_text(), 5)  # log.mask_msisdn: in effect
            assert sim.stats()["binds_total"] == binds, "a reload must not drop the bind"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        sim.stop()


def test_plan_reload_sorts_changed_keys_into_applied_restart_and_unused(make_settings):

    old = make_settings()
    new = make_settings(**{
        "redis.key_prefix": "other", "smsc.window": 33, "metrics.port": 9100, "menu.max_items": 7,
        "dispatch.reassembly_timeout_seconds": 60, "billing.batch": 9, "simulator.smpp_port": 2999,
        "delivery.poll_seconds": 0.5,
    })
    new = new.model_copy(update={"services": new.services[:-1]})
    plan = plan_reload(old, new)
    assert sorted(plan.applied) == ["billing.batch", "delivery.poll_seconds", "dispatch.reassembly_timeout_seconds",
                                    "menu.max_items", "services"]
    assert sorted(plan.restart) == ["metrics.port", "redis.key_prefix", "smsc.window"]
    assert plan.unused == ["simulator.smpp_port"]
    # the running values of restart-only sections are kept; the rest is the new file
    s = plan.settings
    assert s.smsc == old.smsc and s.redis == old.redis and s.metrics == old.metrics
    assert s.menu.max_items == 7 and s.dispatch.reassembly_timeout_seconds == 60 and len(s.services) == len(old.services) - 1
    assert plan_reload(old, old).applied == plan_reload(old, old).restart == []
