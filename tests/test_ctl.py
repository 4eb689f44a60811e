"""Runtime control end to end (`smsbot.control`, ``smsbot ctl``, ``POST /v1/control``): a real
``smsbot run`` process bound to the simulator, on the test session's Redis, controlled by the real
CLI and over real HTTP; what the simulator sees, what the handsets get, the log and the audit."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import redis
import yaml

from smsbot import control
from smsbot.config import SimulatorSettings
from smsbot.messages import Status
from smsbot.keys import Keys
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .conftest import REPO, Phone, base_config, cli
from .helpers import wait_until
from .running_bot import free_port, http_get, start_bot_process, stop_bot_process

ADMIN = {"Authorization": "Bearer ctl-admin-0001"}
READER = {"Authorization": "Bearer ctl-reader-0001"}
EMPTY_MENU = "您目前没有订购任何包月增值业务"


@dataclass
class Bot:
    sim: SimSmsc
    proc: subprocess.Popen
    cfg: Path
    raw: dict[str, Any]
    log_path: Path
    red: redis.Redis
    keys: Keys

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log_lines() if e.get("event") == name]

    def instance(self) -> str:
        names = control.instances(self.red, self.keys)
        assert len(names) == 1, names
        return names[0]

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return cli(self.cfg, "ctl", *args)

    def api(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.raw['api']['port']}/v1/control", json.dumps(body).encode(),
                                     {**headers, "Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def audit(self) -> list[dict[str, str]]:
        return control.audit_entries(self.red, self.keys)


@contextmanager
def ctl_bot(redis_url: str, tmp_path: Path, **smsc: Any) -> Iterator[Bot]:
    sim = SimSmsc(SimulatorSettings(redeliver_seconds=0.3), smpp_port=0, control_port=0).start()
    raw = base_config(redis_url, tmp_path / "var")
    raw["smsc"].update({"port": sim.smpp_port, "drain_timeout": 3, **smsc})
    raw["log"].update({"level": "INFO", "format": "json"})
    raw["api"].update({"port": free_port(), "tokens": ["ops:ctl-admin-0001:*", "reader:ctl-reader-0001:read"]})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    log_path = tmp_path / "bot.log"
    proc = start_bot_process(cfg, log_path)
    red = redis.Redis.from_url(redis_url)
    bot = Bot(sim, proc, cfg, raw, log_path, red, Keys(raw["redis"]["key_prefix"], raw["redis"].get("shards", 16)))
    try:
        api_up = f"http://127.0.0.1:{raw['api']['port']}/status"
        assert wait_until(lambda: sim.binds() and control.instances(red, bot.keys) and http_get(api_up)[0] == 200, 30), \
            log_path.read_text()
        yield bot
    finally:
        stop_bot_process(proc)
        red.close()
        sim.stop()


def test_suspend_and_resume_through_the_cli(redis_server: Any, tmp_path: Path) -> None:
    with ctl_bot(redis_server.url, tmp_path) as bot:
        name, who = bot.instance(), f"cli:{getpass.getuser()}"
        phone = Phone(Handset(bot.sim.control_url, "13800138000"))
        assert EMPTY_MENU in phone.ask("0000")

        done = bot.ctl("suspend", name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{name}\tdone: suspended: drained and unbound" in done.stdout
        assert bot.sim.stats().get("unbinds_received", 0) == 1 and bot.sim.binds() == []
        shown = bot.ctl("status")
        assert shown.returncode == 0 and f"{name}\tsuspended (unbound)" in shown.stdout, shown.stdout + shown.stderr

        # an MO sent while suspended waits at the SMSC (no bind): no reply yet
        mo_id = phone.send("0000")
        assert wait_until(lambda: phone.h.status(mo_id)["attempts"] == 0 and bot.sim.stats()["mo_queued"] == 1, 5)
        assert phone.h.collect(0) == []
        assert bot.ctl("suspend", name).stdout.strip() == f"{name}\tdone: already suspended"

        done = bot.ctl("resume", name)
        assert done.returncode == 0 and f"{name}\tdone: resumed: bound" in done.stdout, done.stdout + done.stderr
        assert EMPTY_MENU in phone.expect(1)[0]["text"]  # the SMSC delivered it once bound again: answered
        assert phone.h.status(mo_id)["state"] == "delivered"
        assert bot.sim.stats()["binds_total"] == 2

        audit = bot.audit()  # newest first; the second suspend (a no-op) is audited too
        assert [(a["action"], a["actor"], a["instance"], a["ok"]) for a in audit] == [
            ("resume", who, name, "1"), ("suspend", who, name, "1"), ("suspend", who, name, "1")]
        lines = bot.events("control")
        assert [(e["action"], e["actor"]) for e in lines] == [("suspend", who), ("suspend", who), ("resume", who)]
        assert bot.events("smsc_suspended") and bot.events("smsc_resumed")

        missing = bot.ctl("resume", "nosuch-1")
        assert missing.returncode == 1 and "no instance 'nosuch-1' alive" in missing.stderr
        assert "Traceback" not in missing.stderr


def test_suspend_drains_refusing_new_mos_and_sending_what_is_queued(redis_server: Any, tmp_path: Path) -> None:
    # the SMSC answers submits 6 s late: the suspend finds a reply in flight and drains it
    with ctl_bot(redis_server.url, tmp_path, drain_timeout=20, response_timeout=30) as bot:
        name = bot.instance()
        early, late = Phone(Handset(bot.sim.control_url, "13800138005")), Phone(Handset(bot.sim.control_url, "13800138006"))
        bot.sim.set_faults(resp_delay_ms=6000)
        early.send("0000")
        assert wait_until(lambda: len(bot.sim.submit_log()) == 1, 10)  # its reply is in flight
        suspend = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(bot.cfg), "ctl", "suspend", name],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            assert wait_until(lambda: bot.events("smsc_draining"), 10), bot.log_path.read_text()
            assert bot.events("smsc_draining")[0]["parts"] == 1 and bot.events("smsc_draining")[0]["suspend"] is True
            mo_id = late.send("0000")  # while draining: refused for now
            assert wait_until(lambda: late.h.status(mo_id)["last_status"] == Status.RX_T_APPN, 10), late.h.status(mo_id)
            out, err = suspend.communicate(timeout=60)
        finally:
            if suspend.poll() is None:
                suspend.kill()
        assert suspend.returncode == 0 and "done: suspended: drained and unbound (0 parts left" in out, out + err
        assert EMPTY_MENU in early.expect(1)[0]["text"]  # sent while draining, before the unbind
        assert bot.sim.binds() == [] and late.h.collect(0) == []
        bot.sim.set_faults(resp_delay_ms=0)

        assert bot.ctl("resume", name).returncode == 0
        assert EMPTY_MENU in late.expect(1)[0]["text"]  # redelivered after the resume, answered
        assert late.h.status(mo_id)["state"] == "delivered" and late.h.status(mo_id)["redeliveries"] >= 1


def test_suspend_and_resume_over_the_api(redis_server: Any, tmp_path: Path) -> None:
    with ctl_bot(redis_server.url, tmp_path) as bot:
        name = bot.instance()
        code, body = bot.api({"instance": name, "action": "suspend"}, READER)
        assert code == 403, body
        assert bot.sim.binds() and bot.audit() == []  # nothing done, nothing audited

        code, body = bot.api({"instance": "all", "action": "suspend"}, ADMIN)
        assert code == 200, body
        [res] = body["results"]
        assert res["instance"] == name and res["ok"] and res["answered"] and res["state"]["suspended"] is True
        assert res["state"]["bound"] is False and bot.sim.binds() == []
        status_url = f"http://127.0.0.1:{bot.raw['api']['port']}/v1/status"
        assert wait_until(lambda: json.loads(http_get(status_url, READER)[1])["instances"][0]["suspended"] is True, 10)

        code, body = bot.api({"instance": name, "action": "resume"}, ADMIN)
        assert code == 200 and body["results"][0]["detail"] == "resumed: bound", body
        assert bot.sim.binds()
        state = bot.api({"instance": name, "action": "status"}, ADMIN)[1]["results"][0]["state"]
        assert state["bound"] is True and state["suspended"] is False and state["window"] == bot.raw["smsc"]["window"]
        assert {"outbox_inflight", "outbox_backlog", "window_used", "binds", "log_level"} <= state.keys()

        assert [(a["action"], a["actor"]) for a in bot.audit()] == [("resume", "api:ops"), ("suspend", "api:ops")]
        assert bot.api({"instance": "nosuch-1", "action": "resume"}, ADMIN)[0] == 404
        code, body = bot.api({"instance": name, "action": "log_level"}, ADMIN)
        assert code == 422 and "level" in json.dumps(body)


def test_log_level_changes_at_run_time_and_back(redis_server: Any, tmp_path: Path) -> None:
    with ctl_bot(redis_server.url, tmp_path) as bot:
        name, who = bot.instance(), f"cli:{getpass.getuser()}"
        phone = Phone(Handset(bot.sim.control_url, "13800138001"))
        assert EMPTY_MENU in phone.ask("0000")
        assert wait_until(lambda: len(bot.events("mo")) == 1, 5)

        done = bot.ctl("log-level", name, "warning")
        assert done.returncode == 0 and "log level INFO -> WARNING" in done.stdout, done.stdout + done.stderr
        assert EMPTY_MENU in phone.ask("0000")
        assert len(bot.events("mo")) == 1  # the mo line is written before the reply is sent: none now

        done = bot.ctl("log-level", name, "INFO")
        assert done.returncode == 0 and "log level WARNING -> INFO" in done.stdout, done.stdout + done.stderr
        assert EMPTY_MENU in phone.ask("0000")
        assert wait_until(lambda: len(bot.events("mo")) == 2, 5)

        below = bot.ctl("log-level", name, "DEBUG")  # below the start level: refused, said why
        assert below.returncode == 1 and "NOT DONE: DEBUG is below the level this process started with (INFO)" in below.stdout
        assert [(a["action"], json.loads(a["args"])["level"], a["ok"], a["actor"]) for a in bot.audit()] == [
            ("log_level", "DEBUG", "0", who), ("log_level", "INFO", "1", who), ("log_level", "WARNING", "1", who)]


def test_reload_through_ctl_applies_a_config_change(redis_server: Any, tmp_path: Path) -> None:
    with ctl_bot(redis_server.url, tmp_path) as bot:
        name = bot.instance()
        phone = Phone(Handset(bot.sim.control_url, "13800138002"))
        assert EMPTY_MENU in phone.ask("0000")

        bot.cfg.write_text(yaml.safe_dump({**bot.raw, "templates": {"zh-CN": {"subscriptions.empty": "重新加载后：没有订购。"}}},
                                          allow_unicode=True), encoding="utf-8")
        done = bot.ctl("reload", name)
        assert done.returncode == 0 and f"{name}\tdone: reloaded" in done.stdout, done.stdout + done.stderr
        assert phone.ask("0000") == "重新加载后：没有订购。"
        assert "templates.zh-CN.subscriptions.empty" in bot.events("reloaded")[0]["applied"]

        # the bot's file made invalid (the CLI would refuse it too: it reads another copy)
        ctl_cfg = tmp_path / "ctl.yaml"
        ctl_cfg.write_text(bot.cfg.read_text(encoding="utf-8"), encoding="utf-8")
        bot.cfg.write_text(yaml.safe_dump({**bot.raw, "smsc": {**bot.raw["smsc"], "window": -1}}), encoding="utf-8")
        refused = cli(ctl_cfg, "ctl", "reload", "all")
        assert refused.returncode == 1 and "NOT DONE: reload refused" in refused.stdout, refused.stdout + refused.stderr
        assert phone.ask("0000") == "重新加载后：没有订购。"  # the running configuration stayed
        assert [(a["action"], a["ok"]) for a in bot.audit()] == [("reload", "0"), ("reload", "1")]


def test_one_instance_of_two_is_suspended_by_name_and_all_resumed(redis_server: Any, tmp_path: Path) -> None:
    with ctl_bot(redis_server.url, tmp_path) as bot:
        first = bot.instance()
        raw = {**bot.raw, "api": {**bot.raw["api"], "port": 0}}  # the second serves no API
        cfg2 = tmp_path / "second.yaml"
        cfg2.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        second_proc = start_bot_process(cfg2, tmp_path / "second.log")
        try:
            assert wait_until(lambda: len(control.instances(bot.red, bot.keys)) == 2 and len(bot.sim.binds()) == 2, 30)
            [second] = [n for n in control.instances(bot.red, bot.keys) if n != first]
            assert bot.ctl("suspend", first).returncode == 0
            assert len(bot.sim.binds()) == 1  # the second stays bound and answers
            assert EMPTY_MENU in Phone(Handset(bot.sim.control_url, "13800138007")).ask("0000")
            shown = bot.ctl("status").stdout
            assert f"{first}\tsuspended (unbound)" in shown, shown
            [line] = [line for line in shown.splitlines() if line.startswith(f"{second}\t")]
            assert "transceiver" in line and "suspended" not in line, shown

            resumed = bot.ctl("resume", "all")
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            assert f"{first}\tdone: resumed: bound" in resumed.stdout and f"{second}\tdone: not suspended" in resumed.stdout
            assert len(bot.sim.binds()) == 2
            assert sorted((a["instance"], a["action"]) for a in bot.audit()) == [
                (first, "resume"), (first, "suspend"), (second, "resume")]
        finally:
            stop_bot_process(second_proc)
