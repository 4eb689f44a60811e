"""Issue 14, "A newcomer's first hour": each item through the real CLI as a separate process (a
pseudo-terminal where the item is about a terminal), against the real simulator, bot and Redis.

1. port clashes: one line naming the port and the setting that moves it, exit 2 (`smsc`, `demo`,
   metrics); `smsc --smpp-port/--control-port`, and a bot following with SMSBOT_SMSC_PORT;
2. `handset MSISDN --wait N` only collects and exits; the prompt has line editing and a history;
3. (Redis at start: tests/test_redis_faults.py) the demo, too, says it in one line;
4. the config file and data in use are said, and `redis status` lists every bundled server;
5. times in the configured zone, labelled; `mt show` prints times;
6. national and international forms of a number are one subscriber (CLI, MOs, events);
7. a `--cycle` far from now is refused unless --force;
9. relative --pidfile, `run --daemon` reports, `stop` on a stopped bot exits 0;
10. the rejected-MT log line carries the id `mt show` takes; `mt list`;
11. the 0000 menu heads monthly and on-demand services separately;
12. --version, completion, redis help texts, one demo banner.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import pytest
import yaml

from smsbot import embedded
from .helpers import wait_until
from smsbot.msisdn import canonical_inbound, normalize_msisdn, subscriber_key
from smsbot.messages import Inbound
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .conftest import REPO, Phone, World, base_config, write_config

MSISDN = "13800138000"
MENU_HEAD = "尊敬的客户，您已订购的包月业务如下："
SHANGHAI = ZoneInfo("Asia/Shanghai")


# -- helpers ---------------------------------------------------------------------------------------------
def smsbot(*args: str, cfg: Path | None = None, cwd: Path = REPO, env: dict[str, str] | None = None,
           timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "smsbot.cli"] + (["--config", str(cfg)] if cfg else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, input=input,
                          env={**os.environ, **(env or {})})


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def write_raw(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_STATE_HOME of this test (handset history, the registry of bundled servers), for the
    test process and every command it runs."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_stats(control_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{control_port}/stats", timeout=5) as r:
        return json.loads(r.read())


def stop_proc(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


# -- 1. port clashes ------------------------------------------------------------------------------------
def test_smsc_port_clash_names_the_port_and_the_setting_that_moves_it(redis_server, tmp_path, busy_port):
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["simulator"].update({"smpp_port": busy_port, "control_port": free_port()})
    res = smsbot("smsc", cfg=write_raw(tmp_path / "c.yaml", raw), timeout=30)
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert f"port {busy_port}" in line and "already in use" in line
    assert "simulator.smpp_port" in line and "SMSBOT_SIMULATOR_SMPP_PORT" in line and "--smpp-port" in line

    raw["simulator"].update({"smpp_port": free_port(), "control_port": busy_port})
    res = smsbot("smsc", cfg=write_raw(tmp_path / "c.yaml", raw), timeout=30)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert f"port {busy_port}" in line and "simulator.control_port" in line and "--control-port" in line

    # the option names it too
    res = smsbot("smsc", "--smpp-port", str(busy_port), cfg=write_raw(tmp_path / "c.yaml", raw), timeout=30)
    assert res.returncode == 2 and f"port {busy_port}" in one_line(res.stderr)


def test_smsc_moved_with_flags_and_the_bot_follows_with_SMSBOT_SMSC_PORT(redis_server, tmp_path):
    smpp, control = free_port(), free_port()
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["log"]["level"] = "INFO"
    cfg = write_raw(tmp_path / "c.yaml", raw)  # smsc.port stays the default 2775
    err = open(tmp_path / "smsc.err", "w")
    sim = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "smsc", "--smpp-port", str(smpp),
                            "--control-port", str(control)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    bot = None
    try:
        assert wait_until(lambda: f"SMSBOT_SMSC_PORT={smpp}" in (tmp_path / "smsc.err").read_text(), 20), \
            (tmp_path / "smsc.err").read_text()
        assert sim_stats(control)["binds"] == 0
        bot = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "SMSBOT_SMSC_PORT": str(smpp)})
        assert wait_until(lambda: sim_stats(control)["binds"] == 1, 30)
        res = smsbot("handset", MSISDN, "--send", "帮助", "--wait", "5", "--control", f"http://127.0.0.1:{control}", cfg=cfg)
        assert res.returncode == 0 and "0000" in res.stdout, res.stdout + res.stderr
    finally:
        if bot is not None:
            assert stop_proc(bot) == 0
        stop_proc(sim)
        err.close()


def test_demo_port_clash_is_one_line_exit_2(redis_server, tmp_path, busy_port):
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["simulator"].update({"smpp_port": free_port(), "control_port": busy_port})
    res = smsbot("demo", "--send", "0000", cfg=write_raw(tmp_path / "c.yaml", raw), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    line = one_line(res.stderr)
    assert f"port {busy_port}" in line and "simulator.control_port" in line and "SMSBOT_SIMULATOR_CONTROL_PORT" in line


def test_metrics_port_clash_is_one_line_exit_2(redis_server, tmp_path, busy_port):
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["metrics"]["port"] = busy_port
    res = smsbot("run", cfg=write_raw(tmp_path / "c.yaml", raw), timeout=60)
    assert res.returncode == 2, res.stderr
    line = one_line(res.stderr)
    assert f"port {busy_port}" in line and "metrics.port" in line and "SMSBOT_METRICS_PORT" in line


# -- 2. handset: --wait only collects; the prompt edits and remembers ------------------------------------
def test_handset_wait_only_collects_and_exits_even_with_stdin_open(world: World, tmp_path):
    world.subscribe(MSISDN, "VIDEO")
    cfg = write_config(world, tmp_path)
    Handset(world.sim.control_url, MSISDN).send("10086", "0000")  # the reply waits in the simulator
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "handset", MSISDN,
                                 "--wait", "3", "--control", world.sim.control_url],
                                stdin=subprocess.PIPE, stdout=o, stderr=e, cwd=REPO,
                                env={**os.environ, "TZ": "America/New_York"})
        try:
            code = proc.wait(20)  # before: the interactive prompt, reading the open stdin forever
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdin.close()  # type: ignore[union-attr]
    assert code == 0, err.read_text()
    text = out.read_text()
    assert MENU_HEAD in text and "视频会员包月" in text
    assert re.search(r"--- from 10086 (\(\d parts\) )?\d\d:\d\d:\d\d \+08:00 ---", text), text  # item 5: labelled, configured zone


class Pty:
    """A command on a pseudo-terminal: type keys, wait for output."""

    def __init__(self, args: list[str], env: dict[str, str]):
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.buf = b""

    @property
    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")

    def read_until(self, predicate: Any, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while not predicate(self.text):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; output so far:\n{self.text}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    assert predicate(self.text), f"closed; output:\n{self.text}"
                    break
                self.buf += chunk
        return self.text

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.close(self.master)


def test_handset_prompt_has_line_editing_and_a_history_kept_across_sessions(world: World, tmp_path, state_home):
    world.subscribe(MSISDN, "VIDEO")
    cfg = write_config(world, tmp_path)
    args = [sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "handset", MSISDN, "--control", world.sim.control_url]
    env = {**os.environ, "TERM": "xterm", "XDG_STATE_HOME": str(state_home)}
    t = Pty(args, env)
    try:
        t.read_until(lambda s: "> " in s)
        t.type(b"00\x0100\r")  # "00", Ctrl-A (start of line), "00": "0000" only with line editing
        t.read_until(lambda s: s.count(MENU_HEAD) == 1 and s.rstrip().endswith(">"))
        t.type(b"\x1b[A\r")  # arrow up: the previous line again
        t.read_until(lambda s: s.count(MENU_HEAD) == 2 and s.rstrip().endswith(">"))
        t.type(b"\x04")  # Ctrl-D leaves
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert "Traceback" not in t.text
    history = state_home / "smsbot" / "handset_history"
    assert "0000" in history.read_text()
    # a new session remembers it
    t = Pty(args, env)
    try:
        t.read_until(lambda s: "> " in s)
        t.type(b"\x1b[A\r")
        t.read_until(lambda s: s.count(MENU_HEAD) == 1)
        t.type(b"quit\r")
        assert t.close() == 0
    finally:
        if t.proc.poll() is None:
            t.proc.kill()


def test_handset_without_a_simulator_says_how_to_start_one(tmp_path, redis_server):
    cfg = write_raw(tmp_path / "c.yaml", base_config(redis_server.url, tmp_path / "var"))
    res = smsbot("handset", MSISDN, "--wait", "0.2", "--control", f"http://127.0.0.1:{free_port()}", cfg=cfg)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "unreachable" in line and "smsbot smsc" in line


# -- 3. Redis at start (the rest: tests/test_redis_faults.py) -------------------------------------------------
def test_demo_with_redis_unreachable_is_one_line(tmp_path):
    raw = base_config(f"redis://127.0.0.1:{free_port()}/0", tmp_path / "var")
    res = smsbot("demo", "--send", "0000", "--smpp-port", "0", "--control-port", "0",
                 cfg=write_raw(tmp_path / "c.yaml", raw))
    assert res.returncode == 3
    assert "unreachable" in one_line(res.stderr)


# -- 4. which config, which data, which bundled servers -----------------------------------------------------
def test_commands_say_which_config_and_data_and_redis_status_lists_every_bundled_server(tmp_path, state_home, redis_server):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    stray = elsewhere / "var"
    try:
        res = smsbot("subs", "list", MSISDN, cwd=elsewhere)  # no config.yaml here, no --config
        assert res.returncode == 0, res.stderr
        assert f"no config.yaml in {elsewhere}" in res.stderr and f"data in {stray}" in res.stderr, res.stderr
        assert f"started the bundled redis-server for {stray / 'redis'}" in res.stderr
        again = smsbot("subs", "list", MSISDN, cwd=elsewhere)
        assert "started the bundled" not in again.stderr and f"no config.yaml in {elsewhere}" in again.stderr
        # run from a directory with its config.yaml: says which, and lists the stray server
        home = tmp_path / "home"
        home.mkdir()
        raw = base_config("", home / "var")
        write_raw(home / "config.yaml", raw)
        st = smsbot("redis", "status", cwd=home)
        assert f"config {home / 'config.yaml'}" in st.stderr, st.stderr
        assert st.returncode == 3 and "not running" in st.stdout  # home's own server was never started
        assert f"data in {stray / 'redis'}" in st.stdout and f"SMSBOT_DATA_DIR={stray} smsbot redis stop" in st.stdout, st.stdout
        # named explicitly, in a script (stderr not a terminal): quiet
        quiet = smsbot("subs", "list", MSISDN, cfg=write_raw(tmp_path / "c.yaml", base_config(redis_server.url, tmp_path / "v")))
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
        # stopped: gone from the list
        assert smsbot("redis", "stop", cwd=elsewhere).returncode == 0
        assert f"{stray / 'redis'}" not in smsbot("redis", "status", cwd=home).stdout
    finally:
        embedded.stop(stray)


# -- 5. times: one zone, labelled ------------------------------------------------------------------------------
def test_times_are_in_the_configured_zone_and_labelled(world: World, tmp_path):
    cfg = write_config(world, tmp_path)
    ny = {"TZ": "America/New_York"}  # a host zone that is not the configured one
    assert smsbot("subs", "add", MSISDN, "VIDEO", cfg=cfg, env=ny).returncode == 0
    listed = smsbot("subs", "list", MSISDN, cfg=cfg, env=ny)
    (row,) = [ln for ln in listed.stdout.splitlines() if ln.startswith("VIDEO")]
    since = row.split("\t")[3]
    assert since.endswith(" +08:00"), row
    stamp = datetime.strptime(since[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp()
    assert abs(stamp - time.time()) < 120, (since, "not the configured zone's time")
    ordered = smsbot("order", MSISDN, "MUSIC", "--at", "2026-11-25T02:00:00Z", cfg=cfg, env=ny)
    assert ordered.returncode == 0 and "at 2026-11-25 10:00:00 +08:00" in ordered.stdout, ordered.stdout


# -- 6. one subscriber, whatever the form of the number -------------------------------------------------------
@pytest.mark.parametrize("written", ["+86 138-0013-8002", "8613800138002", "008613800138002", "13800138002",
                                     "＋８６ １３８００１３８００２", "(+86) 138.0013.8002"])
def test_normalize_msisdn_forms(written: str):
    assert normalize_msisdn(written) == "13800138002"
    assert subscriber_key(written) == "13800138002"


def test_normalize_msisdn_rules():
    assert normalize_msisdn("+44 7700 900123") == "447700900123"  # another country keeps its code
    assert normalize_msisdn("8610086") == "8610086"  # too short to be 86 + a national number
    assert normalize_msisdn("8613800138002", country_code="") == "8613800138002"  # stripping off
    assert normalize_msisdn("+1 212 555 0100", country_code="1") == "2125550100"
    for bad in ("abc", "123", "+86", "1380013800212345678"):
        with pytest.raises(ValueError, match="not a subscriber number"):
            normalize_msisdn(bad)
    for odd in ("CMTLONG8", "861", ""):  # MO source addresses that are not numbers stay as they are
        assert subscriber_key(odd) == odd
    mo = Inbound("13800138002", "10086", "0000", 7)
    assert canonical_inbound(mo, "86") is mo
    intl = Inbound("8613800138002", "10086", "0000", 7, None, 5, b"0000", 0)
    assert canonical_inbound(intl, "86") == Inbound("13800138002", "10086", "0000", 7, None, 5, b"0000", 0, "8613800138002")
    assert canonical_inbound(intl, "") is intl


def test_destination_addresses_follow_the_ton():
    from smsbot.msisdn import destination

    for to in ("13800138002", "8613800138002", "+86 138 0013 8002", "008613800138002"):
        assert destination(to, 1, "86") == "8613800138002", to
        assert destination(to, 2, "86") == "13800138002", to
    assert destination("+447700900123", 1, "86") == "447700900123"  # an MO from abroad: back abroad
    assert destination("13800138002", 1, "") == "13800138002"  # no country code configured: as given
    assert destination("13800138002", 0, "86") == "13800138002"  # unknown TON: as given
    assert destination("CMTLONG8", 1, "86") == "CMTLONG8"  # not a number


def test_national_and_international_forms_are_one_subscriber_everywhere(world: World, tmp_path):
    cfg = write_config(world, tmp_path)
    added = smsbot("subs", "add", "+86 138-0013-8002", "VIDEO", cfg=cfg)
    assert added.returncode == 0 and added.stdout.strip() == "13800138002 VIDEO: added", added.stdout + added.stderr
    for form in ("13800138002", "8613800138002", "+86 13800138002"):
        listed = smsbot("subs", "list", form, cfg=cfg)
        assert listed.returncode == 0 and listed.stdout.startswith("VIDEO\tactive"), (form, listed.stdout)
    # an MO whose source address the SMSC sends in international form: the same subscriber's menu,
    # answered to the address the MO came from
    intl_phone = Phone(Handset(world.sim.control_url, "8613800138002"))
    assert "视频会员包月" in intl_phone.ask("0000")
    # an order event naming the number in another form: applied to the same subscriber
    store = world.bot.store
    store.redis.xadd(store.keys.order_events(), {"order_id": "ORD-NC-1", "msisdn": "+86 138 0013 8002", "service": "NEWS"})
    assert wait_until(lambda: "NEWS\tpending" in smsbot("subs", "list", "13800138002", cfg=cfg).stdout, 15)
    # the admin API too
    from smsbot import admin

    assert [r.code for r in admin.list_subscriptions(world.settings, "0086 138 0013 8002")] == ["VIDEO", "NEWS"]
    # not a number: one line, exit 2
    bad = smsbot("subs", "add", "138-oops", "VIDEO", cfg=cfg)
    assert bad.returncode == 2 and "not a subscriber number" in bad.stderr and "Traceback" not in bad.stderr
    # the country code is a setting: empty keeps numbers as written
    as_written = smsbot("subs", "list", "8613800138002", cfg=cfg, env={"SMSBOT_SUBSCRIBERS_COUNTRY_CODE": ""})
    assert as_written.stdout.strip() == "8613800138002: no subscriptions"


def test_event_streams_use_the_configured_country_code(make_settings):
    """Order, use and usage events are parsed with subscribers.country_code (here 1, not the default 86)."""
    from commands.usage import parse_event
    from smsbot.billing import event_common

    settings = make_settings(**{"subscribers.country_code": "1"})
    assert event_common(settings, "1-0", {"msisdn": "+1 (212) 555-0100", "service": "VIDEO"})[0] == "2125550100"
    assert event_common(settings, "1-0", {"msisdn": "12125550100", "service": "VIDEO"})[0] == "2125550100"
    msisdn, _args = parse_event(settings, "1-0", {"msisdn": "001 212 555 0100", "used": "1", "cycle": "2026-11"})
    assert msisdn == "2125550100"
    with pytest.raises(ValueError, match="not a subscriber number"):
        event_common(settings, "1-0", {"msisdn": "oops", "service": "VIDEO"})


# -- 7. a --cycle far from now ----------------------------------------------------------------------------------
def test_a_usage_cycle_far_from_now_is_refused_unless_forced(world: World, tmp_path):
    from commands.usage import current_cycle

    cfg = write_config(world, tmp_path)
    y, m = (int(x) for x in current_cycle(world.settings).split("-"))

    def shifted(k: int) -> str:
        i = y * 12 + m - 1 + k
        return f"{i // 12:04d}-{i % 12 + 1:02d}"

    stream = world.bot.store.keys.usage_events()
    r = world.bot.store.redis
    before = r.xlen(stream)
    for cycle in (shifted(40), shifted(2), shifted(-13)):
        res = smsbot("usage", MSISDN, "--used", "10MB", "--cycle", cycle, cfg=cfg)
        assert res.returncode == 2, (cycle, res.stdout, res.stderr)
        assert cycle in res.stderr and "--force" in res.stderr and "Traceback" not in res.stderr
    assert r.xlen(stream) == before, "nothing written"
    for cycle in (shifted(0), shifted(-1), shifted(1)):
        assert smsbot("usage", MSISDN, "--used", "10MB", "--cycle", cycle, cfg=cfg).returncode == 0
    forced = smsbot("usage", MSISDN, "--used", "10MB", "--cycle", shifted(40), "--force", cfg=cfg)
    assert forced.returncode == 0 and r.xlen(stream) == before + 4


# -- 9. the daemon's pidfile, its report, stop on a stopped bot ---------------------------------------------
def test_relative_pidfile_daemon_reports_and_stop_is_idempotent(redis_server, tmp_path):
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    work = tmp_path / "work"
    work.mkdir()
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    cfg = write_raw(tmp_path / "c.yaml", raw)
    pidfile = work / "bot.pid"
    try:
        started = smsbot("run", "--daemon", "--pidfile", "bot.pid", "--log-file", "bot.log", cfg=cfg, cwd=work)
        assert started.returncode == 0, started.stderr
        m = re.search(r"running in the background \(pid (\d+)\); pidfile (\S+); logs in (\S+)", started.stdout)
        assert m, started.stdout
        assert int(m.group(1)) == int(pidfile.read_text()) and m.group(2) == str(pidfile)
        assert m.group(3) == str(work / "bot.log")
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20)
        status = smsbot("status", "--pidfile", "bot.pid", cwd=work)  # no --config: the default's bundled Redis
        assert status.returncode == 0 and f"the bundled server in {work / 'var'} is not running" in status.stdout, status.stdout
        assert not (work / "var").exists(), "a status starts no bundled Redis"
        stopped = smsbot("stop", "--pidfile", "bot.pid", cwd=work)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not pidfile.exists(), "a relative pidfile is removed"
        again = smsbot("stop", "--pidfile", "bot.pid", cwd=work)
        assert again.returncode == 0 and "not running" in again.stdout  # LSB: stopping a stopped service succeeds
        assert smsbot("status", "--pidfile", "bot.pid", cwd=work).returncode == 3
        pidfile.write_text("999999\n")  # left by a crash: stop removes it
        stale = smsbot("stop", "--pidfile", "bot.pid", cwd=work)
        assert stale.returncode == 0 and "stale" in stale.stdout and not pidfile.exists()
    finally:
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        sim.stop()


# -- 10. rejected MTs: the id in the log line, mt show, mt list -------------------------------------------------
def test_rejected_mt_log_line_has_the_id_mt_show_takes_and_mt_list_finds_it(redis_server, tmp_path):
    victim, other = "13900000001", "13900000002"
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    raw["dispatch"]["mt_records"] = "always"
    cfg = write_raw(tmp_path / "c.yaml", raw)
    logfile = tmp_path / "bot.log"
    fh = open(logfile, "w")
    bot = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=fh)
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20)
        sim.set_faults(reject={victim: "0x0B"})
        Handset(sim.control_url, victim).send("10086", "帮助")
        assert "0000" in Phone(Handset(sim.control_url, other)).ask("帮助")
        assert wait_until(lambda: "submit_rejected" in logfile.read_text(), 15), logfile.read_text()
        line = json.loads(next(ln for ln in logfile.read_text().splitlines() if "submit_rejected" in ln))
        mt_id = line["mt_id"]
        shown = smsbot("mt", "show", mt_id, cfg=cfg, env={"TZ": "America/New_York"})
        assert shown.returncode == 0 and "state\tREJECTED" in shown.stdout, shown.stdout + shown.stderr
        (at,) = [ln.split("\t", 1)[1] for ln in shown.stdout.splitlines() if ln.startswith("at\t")]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00", at), at  # item 5: a time, not epoch ms
        listed = smsbot("mt", "list", "--state", "rejected", cfg=cfg)
        assert listed.returncode == 0
        (row,) = listed.stdout.splitlines()
        assert row.split("\t")[1:5] == [mt_id, "REJECTED", victim, "help"], row
        everything = smsbot("mt", "list", cfg=cfg).stdout.splitlines()  # the help reply: one record per part sent
        sent = [r for r in everything if r.split("\t")[2] in ("ENROUTE", "DELIVRD")]
        assert len(everything) == len(sent) + 1 and sent, everything
        mine = smsbot("mt", "list", "--msisdn", "+86 139 0000 0002", cfg=cfg).stdout.splitlines()
        assert mine == sent, (mine, sent)
        assert len(smsbot("mt", "list", "--limit", "1", cfg=cfg).stdout.splitlines()) == 1
        none = smsbot("mt", "list", "--state", "expired", cfg=cfg)
        assert none.returncode == 0 and none.stdout.strip() == "no MT records in state EXPIRED"
    finally:
        assert stop_proc(bot) == 0
        fh.close()
        sim.stop()


# -- 11. monthly and on-demand services under their own headings -----------------------------------------------
def test_menu_lists_monthly_and_on_demand_services_under_their_own_headings(world: World):
    phone = world.handset(MSISDN)
    world.subscribe(MSISDN, "VIDEO", "RING", "NEWS")  # RING is on-demand, ordered between the two monthly ones
    menu = phone.ask("0000", n=1)
    assert menu.splitlines()[:7] == [
        "尊敬的客户，您已订购的业务如下：",
        "包月业务：", "1. 视频会员包月 15元/月", "2. 手机早晚报 3元/月",
        "按次业务（按使用次数计费）：", "3. 彩铃点播 2元/次",
        "请在24小时内直接回复序号退订，多个序号用逗号或空格隔开，如：1，3。【中国移动】",
    ], menu
    assert "包月业务如下" not in menu
    assert "您已成功退订彩铃点播" in phone.ask("3")  # the number shown is the number that cancels
    # monthly services only: the one heading, as before
    assert phone.ask("0000").splitlines()[:3] == [MENU_HEAD, "1. 视频会员包月 15元/月", "2. 手机早晚报 3元/月"]


# -- 12. version, completion, help, one demo banner --------------------------------------------------------------
def test_version_completion_and_redis_help():
    res = smsbot("--version")
    assert res.returncode == 0 and re.fullmatch(r"smsbot \d+\.\d+\.\d+\n", res.stdout), res.stdout
    entry = Path(sys.executable).parent / "smsbot"
    script = subprocess.run([str(entry)], capture_output=True, text=True, env={**os.environ, "_SMSBOT_COMPLETE": "bash_source"})
    assert "complete " in script.stdout and "_SMSBOT_COMPLETE" in script.stdout, script.stdout + script.stderr
    words = subprocess.run([str(entry)], capture_output=True, text=True, env={
        **os.environ, "_SMSBOT_COMPLETE": "bash_complete", "COMP_WORDS": "smsbot red", "COMP_CWORD": "1"})
    assert "redis" in words.stdout
    assert "_SMSBOT_COMPLETE=bash_source smsbot" in smsbot("--help").stdout
    assert "_SMSBOT_COMPLETE=bash_source smsbot" in (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    helptext = smsbot("redis", "--help").stdout
    rows = {ln.split()[0]: ln for ln in helptext.splitlines() if ln.startswith("  ") and ln.split()[0] in ("start", "stop", "status")}
    assert set(rows) == {"start", "stop", "status"} and not any(r.endswith("...") for r in rows.values()), helptext


def test_demo_prints_one_banner(redis_server, tmp_path):
    raw = base_config(redis_server.url, tmp_path / "var")
    res = smsbot("demo", "--smpp-port", "0", "--control-port", "0", cfg=write_raw(tmp_path / "c.yaml", raw),
                 input="0000\nquit\n", timeout=90)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("type a message") == 1, res.stdout
    assert res.stdout.count("smsbot demo") == 1 and "handset 13800138000 ->" not in res.stdout
    assert MENU_HEAD in res.stdout
