"""The alert rules (``contrib/prometheus``) checked and unit-tested with promtool, and a real Prometheus
(Debian's ``prometheus``, on loopback, storage in a temporary directory) scraping a real ``smsbot
run``: it scrapes it (``up`` 1, smsbot series stored), loads the rules and evaluates them without
error, and every query of the Grafana dashboard evaluates and returns data from what it scraped.

promtool and prometheus come with Debian's ``prometheus`` package (``.ci/run`` installs it); these
tests skip, saying so, only when it is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .helpers import wait_until

from .conftest import REPO
from .running_bot import (exported_names, free_port, http_get, load_dashboard_module, metric_names,
                          running_bot, substitute_grafana_variables)

RULES = REPO / "contrib/prometheus/smsbot-rules.yml"
RULE_TESTS = REPO / "contrib/prometheus/smsbot-rules.test.yml"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
needs_prometheus = pytest.mark.skipif(not (PROMTOOL and PROMETHEUS), reason=(
    "promtool/prometheus not installed: Debian's prometheus package (.ci/run installs it)"))


def rule_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {r["alert"]: r["expr"] for group in doc["groups"] for r in group["rules"]}


@needs_prometheus
def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    checked = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS: 10 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True,
                            text=True, timeout=120)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_the_rules_cover_what_operators_are_paged_for_with_a_severity_and_a_runbook():
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = {r["alert"]: r for group in doc["groups"] for r in group["rules"]}
    for wanted in ("SmsbotBindDown", "SmsbotOutboxOldestAgeHigh", "SmsbotReceiptsFailing", "SmsbotRedisUnreachable",
                   "SmsbotLeaseLost", "SmsbotWebhookBacklog"):
        assert wanted in rules
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
              for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == set(rules), f"alerts never seen firing in the unit tests: {sorted(set(rules) - tested)}"


# -- a real Prometheus scraping a real bot ---------------------------------------------------------------
class Prometheus:
    def __init__(self, tmp_path: Path, target: str):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms", "evaluation_interval": "500ms"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "smsbot", "static_configs": [{"targets": [target]}]}],
        }
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = tmp_path / "prometheus.log"
        with open(self.log_path, "w") as log_fh:
            self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                          f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log_fh, stderr=log_fh)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str, **params: str) -> Any:
        code, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        if code not in (200, 400, 422):
            return None
        return json.loads(body)

    def query(self, expr: str) -> list[dict[str, Any]] | None:
        answer = self.api("query", query=expr)
        if answer is None:
            return None
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        p = Prometheus(tmp_path, target)
        started.append(p)
        assert wait_until(lambda: http_get(f"http://127.0.0.1:{p.port}/-/ready")[0] == 200, 30), p.log()
        return p

    yield start
    for p in started:
        p.stop()


@needs_prometheus
def test_a_real_prometheus_scrapes_a_running_bot_and_evaluates_the_rules_and_the_dashboard(redis_server, tmp_path: Path,
                                                                                              prometheus_for: Any):
    with running_bot(redis_server.url, tmp_path) as bot:
        exported = exported_names(bot.metrics_text())
        named = set().union(*(metric_names(e) for e in rule_exprs().values())) - {"up"}  # up: Prometheus's own
        assert not sorted(named - exported), "the rules name metrics no bot exports"

        prom = prometheus_for(f"127.0.0.1:{bot.metrics_port}")
        up = lambda: prom.query('up{job="smsbot"}')  # noqa: E731
        assert wait_until(lambda: (r := up()) and r[0]["value"][1] == "1", 30), (up(), prom.log())
        bound = prom.query('smsbot_smsc_bound{job="smsbot"}')
        assert bound and bound[0]["value"][1] == "1" and bound[0]["metric"]["instance"] == f"127.0.0.1:{bot.metrics_port}"

        # the rules: loaded, every one evaluated without error; none fires on a healthy bot
        def rules_evaluated() -> list[dict[str, Any]] | None:
            answer = prom.api("rules")
            rules = [r for g in (answer or {}).get("data", {}).get("groups", []) for r in g["rules"]]
            return rules if len(rules) == len(rule_exprs()) and all(r["health"] == "ok" for r in rules) else None

        assert wait_until(rules_evaluated, 30), (prom.api("rules"), prom.log())
        assert not [r["name"] for r in rules_evaluated() if r["state"] != "inactive"]

        # every dashboard query: valid PromQL that returns data from what was scraped (not the pending ones)
        board = load_dashboard_module()
        for expr in board.queries():
            concrete = substitute_grafana_variables(expr)
            assert wait_until(lambda: prom.query(concrete), 20), f"no data for {concrete}"
