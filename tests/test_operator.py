"""Issue 19, the operator's and the tester's corners: each item through the real CLI as a separate
process (`smsbot` run as a subprocess), the real daemon and its signals, the real simulator and Redis.

5. a SIGHUP changing one key applies that key only (a relative data_dir is not re-read from /), and
   a refused reload names the file's line as `config check` does;
6. `smsbot redis stop` right after `run --daemon` refuses: the bot's claim on its Redis exists
   before `run --daemon` returns;
7. the docs' `smsbot redis cli XADD …` lines (docs/subscribers.md) run verbatim in a fresh directory;
8. `config check` refuses the Redis URLs every other command refuses, with the same line;
11. --pidfile / --log-file in a directory that does not exist: one line, exit 2, nothing created;
    `--log-file` without `--daemon` logs there;
12. `handset --send` with no bot bound (or no simulator) says so and exits non-zero;
14. log lines carry their time in billing.timezone with its offset;
15. the YAML error names the file and line; `smsbot api` checks Redis before announcing itself;
    the demo's prompt is the docs' (docs/subscribers.md); a menu of one item reads naturally.
(13, the web page: tests/test_web_handsets.py.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from smsbot import embedded
from .helpers import wait_until
from smsbot.simulator.smsc import SimSmsc

from .conftest import REPO, World, base_config

MSISDN = "13800138000"
SMSBOT = str(Path(sys.executable).parent / "smsbot")  # the installed entry point, as a user runs it


# -- helpers ---------------------------------------------------------------------------------------------
def smsbot(*args: str, cfg: Path | None = None, cwd: Path = REPO, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [SMSBOT] + (["--config", str(cfg)] if cfg else []) + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env={**os.environ, **(env or {})})


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def write_raw(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def line_of(path: Path, key: str) -> int:
    """1-based line of the first line of `path` that starts (indentation aside) with `key`."""
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ln.lstrip().startswith(key))


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    out = []
    for ln in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if rec.get("event") == event:
            out.append(rec)
    return out


def kill_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def sim() -> Any:
    s = SimSmsc(smpp_port=0, control_port=0).start()
    yield s
    s.stop()


# -- 5. SIGHUP: only what changed; a refused reload names the line ------------------------------------------
def test_sighup_with_a_relative_data_dir_applies_only_what_changed_and_a_refusal_names_the_line(redis_server, tmp_path, sim):
    raw = base_config(redis_server.url, tmp_path)
    raw["data_dir"] = "./var"  # relative, as in the shipped config.yaml: the daemon runs in /
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    cfg = write_raw(tmp_path / "config.yaml", raw)
    logfile, pidfile = tmp_path / "bot.json", tmp_path / "bot.pid"
    try:
        started = smsbot("--config", "config.yaml", "run", "--daemon", "--pidfile", "bot.pid", "--log-file", "bot.json",
                         cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20), logfile.read_text()
        pid = int(pidfile.read_text())

        raw["menu"]["validity_seconds"] = 3600
        write_raw(cfg, raw)
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: log_events(logfile, "reloaded"), 10), logfile.read_text()
        (reloaded,) = log_events(logfile, "reloaded")
        assert reloaded["applied"] == ["menu.validity_seconds"]
        assert reloaded["restart_needed"] == [], "nothing that needs a restart changed"
        assert reloaded["level"] == "info"

        raw["menu"]["validity_seconds"] = 0  # must be >= 1
        write_raw(cfg, raw)
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: log_events(logfile, "reload_refused"), 10), logfile.read_text()
        (refused,) = log_events(logfile, "reload_refused")
        line = line_of(cfg, "validity_seconds:")
        check = smsbot("--config", "config.yaml", "config", "check", cwd=tmp_path)
        assert check.returncode == 2
        assert f"menu.validity_seconds (line {line}): " in check.stderr
        assert [e for e in refused["errors"] if e.startswith(f"menu.validity_seconds (line {line}): ")], refused
        assert refused["errors"][0] in check.stderr, "the same line as config check"
        assert smsbot("stop", "--pidfile", "bot.pid", cwd=tmp_path).returncode == 0
    finally:
        kill_pidfile(pidfile)


# -- 8. config check refuses what every other command refuses --------------------------------------------------
@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "redis://127.0.0.1:notaport/0"])
def test_config_check_refuses_a_redis_url_the_other_commands_refuse_with_the_same_line(tmp_path, url):
    cfg = write_raw(tmp_path / "config.yaml", base_config("", tmp_path / "var"))
    env = {"SMSBOT_REDIS_URL": url}
    other = smsbot("subs", "list", MSISDN, cfg=cfg, env=env)
    assert other.returncode == 2, other.stderr
    refusal = one_line(other.stderr)
    assert "redis.url" in refusal and "SMSBOT_REDIS_URL" in refusal
    check = smsbot("config", "check", cfg=cfg, env=env)
    assert check.returncode == 2, check.stdout + check.stderr
    assert one_line(check.stderr) == refusal
    assert "configuration OK" not in check.stdout


# -- 15. the YAML error names the file and its line -------------------------------------------------------------
def test_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("data_dir: ./var\nsmsc: [this is not valid\n", encoding="utf-8")
    res = smsbot("config", "check", cfg=cfg)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "<unicode string>" not in res.stderr
    problem = res.stderr.splitlines()[1].strip()
    assert problem.startswith(f"{cfg} (line 3, column 1): not valid YAML: "), res.stderr
    assert "started on line 2, column 7" in problem


# -- 6. redis stop right after run --daemon ----------------------------------------------------------------
def test_redis_stop_right_after_run_daemon_is_refused_every_time(tmp_path, sim, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    raw = base_config("", tmp_path / "var")  # redis.url empty: the bundled server in data_dir
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    cfg = write_raw(tmp_path / "config.yaml", raw)
    pidfile, logfile = tmp_path / "bot.pid", tmp_path / "bot.json"
    er = embedded.layout(tmp_path / "var")
    try:
        for attempt in range(3):
            started = smsbot("run", "--daemon", "--pidfile", str(pidfile), "--log-file", str(logfile), cfg=cfg)
            assert started.returncode == 0, started.stderr
            refused = smsbot("redis", "stop", cfg=cfg)  # at once: no sleep between the two commands
            assert refused.returncode == 1, (attempt, refused.stdout, refused.stderr)
            line = one_line(refused.stderr)
            assert line.startswith("smsbot: not stopped: 1 running bot(s) use this Redis ("), line
            assert "--force" in line
            assert embedded.answers(er), f"try {attempt + 1}: the bot's Redis was stopped"
            assert wait_until(lambda: sim.stats()["binds"] == 1, 20), logfile.read_text()
            assert smsbot("stop", "--pidfile", str(pidfile)).returncode == 0
            assert wait_until(lambda: sim.stats()["binds"] == 0, 10)
        assert not log_events(logfile, "bundled_redis_stopped_on_purpose")
        # with no bot left (their claims went with them) it stops
        assert smsbot("redis", "stop", cfg=cfg).stdout.strip() == "stopped"
    finally:
        kill_pidfile(pidfile)
        embedded.stop(tmp_path / "var")


# -- 7. the docs' redis-cli lines, verbatim ---------------------------------------------------------------------
def documented_shell_lines() -> list[str]:
    """Every line of the shell blocks of the README and the documentation site's pages."""
    text = "".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    return [ln for block in re.findall(r"```sh\n(.*?)```", text, re.S) for ln in block.splitlines()]


def test_documented_xadd_lines_run_verbatim_in_a_fresh_clone(tmp_path):
    lines = [ln for ln in documented_shell_lines() if " XADD " in ln]
    assert len(lines) >= 2, lines
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "smsbot").symlink_to(SMSBOT)  # what the quick start's venv holds
    (clone / "config.yaml").write_bytes((REPO / "config.yaml").read_bytes())
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    try:
        for ln in lines:
            res = subprocess.run(["bash", "-c", ln], cwd=clone, capture_output=True, text=True, timeout=60,
                                 env={k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")} | env)
            assert res.returncode == 0, f"{ln}\n{res.stdout}{res.stderr}"
            assert re.fullmatch(r"\d+-\d+", res.stdout.strip()), f"{ln}: XADD answered {res.stdout!r} {res.stderr}"
            stream = shlex.split(ln)[shlex.split(ln).index("XADD") + 1]
            count = subprocess.run([str(clone / ".venv/bin/smsbot"), "redis", "cli", "XLEN", stream], cwd=clone,
                                   capture_output=True, text=True, timeout=30, env={**os.environ, **env})
            assert count.stdout.strip() == "1", (stream, count.stdout, count.stderr)
    finally:
        embedded.stop(clone / "var")


# -- 11. paths that do not exist ---------------------------------------------------------------------------
def test_pidfile_or_log_file_in_a_missing_directory_is_one_line_exit_2_and_creates_nothing(redis_server, tmp_path, sim):
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    cfg = write_raw(tmp_path / "config.yaml", raw)
    missing = tmp_path / "nonexistent" / "dir"
    cases = [
        (["run", "--daemon", "--pidfile", str(missing / "x.pid")], "--pidfile", missing),
        (["run", "--daemon", "--pidfile", str(tmp_path / "x.pid"), "--log-file", str(missing.parent / "d.json")],
         "--log-file", missing.parent),
        (["run", "--pidfile", str(missing / "x.pid")], "--pidfile", missing),
        (["run", "--log-file", str(missing / "d.json")], "--log-file", missing),
    ]
    try:
        for args, option, parent in cases:
            res = smsbot(*args, cfg=cfg, timeout=20)
            assert res.returncode == 2, (args, res.stdout, res.stderr)
            line = one_line(res.stderr)
            assert line.startswith(f"smsbot: {option} ") and f"{parent} does not exist" in line, line
            assert not (tmp_path / "nonexistent").exists(), "no directory is created for a path given"
        assert sim.stats()["binds_total"] == 0, "no bot started"
        assert not (tmp_path / "x.pid").exists()
    finally:
        kill_pidfile(tmp_path / "x.pid")
        kill_pidfile(missing / "x.pid")


def test_log_file_without_daemon_logs_to_that_file(redis_server, tmp_path, sim):
    raw = base_config(redis_server.url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    write_raw(tmp_path / "config.yaml", raw)
    proc = subprocess.Popen([SMSBOT, "--config", "config.yaml", "run", "--log-file", "bot.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    logfile = tmp_path / "bot.json"
    assert log_events(logfile, "bot_starting") and log_events(logfile, "bot_stopped"), logfile.read_text()
    assert one_line(err) == f"smsbot: logs in {logfile}", "stderr says where the logs go, and carries none"


# -- 12. a handset with nothing to answer it ------------------------------------------------------------------
def test_handset_send_with_no_bot_bound_says_so_and_sends_nothing(tmp_path, redis_server, sim):
    cfg = write_raw(tmp_path / "c.yaml", base_config(redis_server.url, tmp_path / "var"))
    res = smsbot("handset", MSISDN, "--send", "0000", "--control", sim.control_url, cfg=cfg)
    assert res.returncode == 3, (res.stdout, res.stderr)
    line = one_line(res.stderr)
    assert line.startswith(f"smsbot: no bot is bound to the simulator on SMPP port {sim.smpp_port} "), line
    assert "smsbot run" in line and f"SMSBOT_SMSC_PORT={sim.smpp_port}" in line
    assert res.stdout == ""
    assert sim.stats()["mo_injected"] == 0, "nothing is sent to wait there unanswered"


def test_handset_send_with_no_simulator_says_how_to_start_one(tmp_path, redis_server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_raw(tmp_path / "c.yaml", base_config(redis_server.url, tmp_path / "var"))
    res = smsbot("handset", MSISDN, "--send", "0000", "--control", f"http://127.0.0.1:{port}", cfg=cfg)
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert "unreachable" in line and "smsbot smsc" in line


# -- 15. smsbot api checks Redis before announcing itself ------------------------------------------------------
def test_api_with_redis_unreachable_is_one_line_and_never_announces_itself(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead, api_port = s.getsockname()[1], None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = s.getsockname()[1]
    cfg = write_raw(tmp_path / "c.yaml", base_config(f"redis://127.0.0.1:{dead}/0", tmp_path / "var"))
    res = smsbot("api", "--port", str(api_port), cfg=cfg, timeout=30)
    assert res.returncode == 3, (res.stdout, res.stderr)
    line = one_line(res.stderr)
    assert "unreachable" in line and f"127.0.0.1:{dead}" in line
    assert "HTTP API on" not in res.stdout + res.stderr


# -- 15. the docs' transcript is what the demo prints -------------------------------------------------------
def documented_transcript() -> list[str]:
    """The transcript of docs/subscribers.md's "What a subscriber sees"."""
    text = (REPO / "docs" / "subscribers.md").read_text(encoding="utf-8")
    section = text.split("## What a subscriber sees", 1)[1]
    return section.split("```\n", 2)[1].splitlines()


def shape(line: str) -> str:
    """A transcript line with its clock time made generic."""
    return re.sub(r"\d\d:\d\d:\d\d \+\d\d:\d\d", "HH:MM:SS +ZZ:ZZ", line)


def test_documented_transcript_is_what_the_demo_prints(redis_server, tmp_path):
    transcript = documented_transcript()
    sends = [ln.split(" ", 1)[1] for ln in transcript if ln.startswith(">>> ")]
    assert sends == ["0000", "2"], transcript
    raw = base_config(redis_server.url, tmp_path / "var")
    args = ["demo", "--smpp-port", "0", "--control-port", "0"] + [a for s in sends for a in ("--send", s)]
    res = smsbot(*args, cfg=write_raw(tmp_path / "c.yaml", raw), timeout=90)
    assert res.returncode == 0, res.stderr
    printed = res.stdout.splitlines()[2:]  # after the banner's two lines
    assert [shape(ln) for ln in printed] == [shape(ln) for ln in transcript]


def test_demo_prompt_is_the_documented_prompt(redis_server, tmp_path):
    import pty
    import select

    prompt = documented_transcript()[0].split(" ", 1)[0] + " "
    raw = base_config(redis_server.url, tmp_path / "var")
    cfg = write_raw(tmp_path / "c.yaml", raw)
    master, slave = pty.openpty()
    proc = subprocess.Popen([SMSBOT, "--config", str(cfg), "demo", "--smpp-port", "0", "--control-port", "0"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, start_new_session=True,
                            env={**os.environ, "TERM": "xterm", "XDG_STATE_HOME": str(tmp_path / "state")})
    os.close(slave)
    buf = b""

    def read_until(pred: Any, timeout: float = 30) -> str:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while not pred(buf.decode("utf-8", "replace")):
            left = deadline - time.monotonic()
            assert left > 0, buf.decode("utf-8", "replace")
            if select.select([master], [], [], min(left, 0.2))[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    chunk = b""
                assert chunk, buf.decode("utf-8", "replace")
                buf += chunk
        return buf.decode("utf-8", "replace")

    try:
        read_until(lambda s: "type a message" in s and s.rstrip(" ").endswith(prompt.rstrip()))
        os.write(master, b"0000\r")
        text = read_until(lambda s: "尊敬的客户" in s and s.count(prompt) >= 2)
        assert f"{prompt}0000" in text
        os.write(master, b"quit\r")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


# -- 15. a menu of one item reads naturally ---------------------------------------------------------------------
def test_a_menu_of_one_item_asks_for_1_in_both_languages(make_world):
    world: World = make_world(short_codes=[
        {"code": "10086", "language": "zh-CN", "commands": ["subscriptions", "help"]},
        {"code": "10010", "language": "en", "commands": ["subscriptions", "help"]},
    ])
    world.subscribe(MSISDN, "VIDEO")
    phone = world.handset(MSISDN)
    menu = phone.ask("0000")
    assert menu.endswith("请在24小时内直接回复1退订。【中国移动】"), menu
    assert phone.ask("5") == "回复内容有误，请回复1退订。"  # not "请回复1至1之间的序号"
    menu = phone.ask("0000", to="10010")
    assert menu.endswith("Reply with 1 within 24 hours to cancel."), menu
    assert phone.ask("7", to="10010") == "Sorry, reply with 1 to cancel."
    # two items: the range, as before
    world.subscribe(MSISDN, "MUSIC")
    phone.ask("0000")
    assert phone.ask("5") == "回复内容有误，请回复1至2之间的序号退订，多个序号用逗号或空格隔开。"


# -- 14. every time written is in billing.timezone, labelled: log lines too ------------------------------------
def test_log_lines_carry_their_time_in_billing_timezone_with_the_offset_also_after_a_reload(redis_server, tmp_path, sim):
    from zoneinfo import ZoneInfo

    raw = base_config(redis_server.url, tmp_path / "var")
    raw["smsc"]["port"] = sim.smpp_port
    raw["log"]["level"] = "INFO"
    raw["billing"]["timezone"] = "Asia/Kolkata"  # +05:30: neither the host's zone (TZ below) nor UTC
    cfg = write_raw(tmp_path / "config.yaml", raw)
    logfile = tmp_path / "bot.json"
    with open(logfile, "w") as err:
        proc = subprocess.Popen([SMSBOT, "--config", str(cfg), "run"], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "TZ": "America/New_York"})
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20)
        assert wait_until(lambda: log_events(logfile, "smsc_bound"), 10), logfile.read_text()
        raw["billing"]["timezone"] = "+08:00"
        write_raw(cfg, raw)
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: log_events(logfile, "reloaded"), 10), logfile.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [json.loads(ln) for ln in logfile.read_text().splitlines() if ln.startswith("{")]
    kolkata = ZoneInfo("Asia/Kolkata").utcoffset(datetime(2026, 1, 1))
    plus8 = datetime.fromisoformat("2026-01-01T00:00:00+08:00").utcoffset()
    offsets = {}
    for rec in lines:
        stamp = rec["timestamp"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), rec
        offsets.setdefault(rec["event"], datetime.fromisoformat(stamp).utcoffset())
        assert offsets[rec["event"]] in (kolkata, plus8), rec
    # before the reload in the first zone; the reload's line and all after it in the new one
    assert offsets["config_in_use"] == offsets["smsc_bound"] == kolkata, offsets
    assert offsets["reloaded"] == offsets["bot_stopped"] == offsets["exit"] == plus8, offsets
