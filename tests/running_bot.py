"""A real ``smsbot run`` process bound to the simulator, on the test session's Redis, with its metrics
port and the HTTP API, after traffic that moves every counter the dashboard and the alert rules
read (tests/test_dashboard.py, tests/test_prometheus.py); the dashboard module; and the metric
names a PromQL expression or a ``/metrics`` text holds.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterator

import yaml

from .helpers import wait_until
from smsbot import admin, config, connections
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .conftest import REPO, Phone, base_config

TOKEN = "ops:dashboards-0001:*"
AUTH = {"Authorization": "Bearer dashboards-0001"}
MSISDN, UNDELIVERED, REFUSED = "13800138000", "13800138001", "13800138002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


@dataclass
class RunningBot:
    sim: SimSmsc
    proc: subprocess.Popen
    metrics_port: int
    api_port: int
    log_path: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def metrics_text(self) -> str:
        code, body = http_get(self.metrics_url + "/metrics")
        assert code == 200, self.log()
        return body.decode()


@contextmanager
def running_bot(redis_url: str, tmp_path: Path, traffic: bool = True) -> Iterator[RunningBot]:
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    raw = base_config(redis_url, tmp_path / "var")
    raw["smsc"].update({"port": sim.smpp_port, "registered_delivery": 1})
    raw["log"]["level"] = "INFO"
    raw["metrics"]["port"] = free_port()
    raw["api"].update({"port": free_port(), "tokens": [TOKEN]})
    # an endpoint nobody listens on: the webhook metrics (backlog, failures) get their samples
    raw["webhooks"] = [{"name": "ops", "url": f"http://127.0.0.1:{free_port()}/hook", "events": ["*"],
                        "secret": "dashboards-webhook-secret"}]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    log_path = tmp_path / "bot.log"
    proc = start_bot_process(cfg, log_path)
    bot = RunningBot(sim, proc, raw["metrics"]["port"], raw["api"]["port"], log_path)
    try:
        assert wait_until(lambda: http_get(bot.metrics_url + "/healthz")[0] == 200, 30), bot.log()
        if traffic:
            drive_traffic(bot, config.from_dict(raw))
        yield bot
    finally:
        stop_bot_process(proc)
        sim.stop()


def start_bot_process(cfg: Path, log_path: Path) -> subprocess.Popen:
    """`smsbot run` with config `cfg` as a process of its own, its log lines in `log_path`."""
    with open(log_path, "w") as log_fh:
        return subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                stdout=subprocess.DEVNULL, stderr=log_fh, cwd=REPO)


def stop_bot_process(proc: subprocess.Popen) -> None:
    """SIGTERM (the bot drains and unbinds), then SIGKILL if it has not ended in 20 s."""
    stop_process(proc)


def stop_process(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """An smsbot process (bot, simulator): SIGTERM, then SIGKILL if it has not ended in `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def drive_traffic(bot: RunningBot, settings: config.Settings) -> None:
    """MOs and replies, receipts delivered and undelivered, a submit throttled and one refused for
    good, API requests: every labelled counter gets its first sample. (The subscriptions are
    written from here, not by three ``smsbot subs add`` processes: the CLI has its own tests.)"""
    store = connections.open_store(settings)
    try:
        for number in (MSISDN, UNDELIVERED, REFUSED):
            assert admin.subscribe(settings, number, "VIDEO", store=store) == "added"
    finally:
        store.close()
    bot.sim.set_profile(receipt_outcomes={UNDELIVERED: "UNDELIV:034"})
    for number in (MSISDN, UNDELIVERED):
        assert "视频会员包月" in Phone(Handset(bot.sim.control_url, number)).ask("0000")
    bot.sim.set_faults(throttle_first=1, reject={REFUSED: 0x0B})
    Handset(bot.sim.control_url, REFUSED).send("10086", "0000")
    api = f"http://127.0.0.1:{bot.api_port}"
    assert http_get(f"{api}/v1/status", AUTH)[0] == 200
    assert wait_until(lambda: all(f"{name}{{" in bot.metrics_text() for name in (
        "smsbot_mt_failed_total", "smsbot_mt_retried_total", "smsbot_api_request_seconds_count")), 15), bot.log()
    assert wait_until(lambda: 'smsbot_receipts_total{state="UNDELIV"}' in bot.metrics_text(), 15), bot.log()


def load_dashboard_module() -> ModuleType:
    """contrib/grafana/smsbot_dashboard.py (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("smsbot_dashboard", REPO / "contrib/grafana/smsbot_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# -- metric names ----------------------------------------------------------------------------------------
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported_names(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` text exports: sample names, and each declared family with
    the names its type gives (a labelled counter with no sample yet is still declared)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            names.update(name + suffix for suffix in _SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def sampled_names(exposition: str) -> set[str]:
    """The series names with at least one sample."""
    return {re.split(r"[{ ]", line, 1)[0] for line in exposition.splitlines() if line and not line.startswith("#")}


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
             "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions (followed by
    ``(``), keywords, label names (inside ``{}``, ``by (...)``/``without (...)``), strings or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    found = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end():].lstrip()
        if m.group(0).lower() in _KEYWORDS or rest.startswith("("):
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # the exponent or unit of a number
        found.add(m.group(0))
    return found


def substitute_grafana_variables(expr: str) -> str:
    """A dashboard query as Grafana would send it: every instance, a one-minute rate window."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
