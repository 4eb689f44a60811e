"""The Grafana dashboard (``contrib/grafana``): the committed JSON is what the module builds, and every
metric its panels' queries name is exported by a real ``smsbot run`` (bound to the simulator, on
real Redis, after traffic) — Grafana itself cannot be installed here, so the queries are what is
checked (tests/test_prometheus.py also runs each through a real Prometheus scraping a bot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO
from .running_bot import exported_names, load_dashboard_module, metric_names, running_bot, sampled_names

pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk is in the test extra: pip install -e '.[test]'")


def test_the_committed_json_is_what_the_module_builds():
    board = load_dashboard_module()
    committed = (REPO / "contrib/grafana/smsbot-dashboard.json").read_text(encoding="utf-8")
    assert board.render() == committed, "regenerate it: python contrib/grafana/smsbot_dashboard.py --write"
    doc = json.loads(committed)
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"]), "panel ids must be unique"
    titles = {p["title"] for p in panels}
    for wanted in ("MOs handled per second", "MTs per second", "Reply latency", "Window use", "Outbox depth",
                   "Oldest unsent reply", "Receipts by state per second", "Receipts failing", "SMPP binds", "Redis",
                   "Lease", "API requests per second", "API latency", "Webhook backlog"):
        assert wanted in titles
    # the queries in the JSON are the module's, panel by panel
    assert [t["expr"] for p in panels for t in p["targets"]] == board.queries()


def test_metric_names_are_read_from_promql():
    assert metric_names('histogram_quantile(0.99, sum by (le, route) (rate(smsbot_api_request_seconds_bucket[5m])))') == {
        "smsbot_api_request_seconds_bucket"}
    assert metric_names('sum(rate(a_total{state=~"UNDELIV|X",instance=~"$i"}[1m])) / sum(rate(b_total[1m])) > 0.2e1') == {
        "a_total", "b_total"}
    assert metric_names("min by (instance) (smsbot_lease_held) == bool 0 and on (instance) up offset 5m") == {
        "smsbot_lease_held", "up"}


def test_every_metric_the_dashboard_queries_is_exported_by_a_running_bot(redis_server, tmp_path: Path):
    board = load_dashboard_module()
    named = set().union(*(metric_names(q) for q in board.queries()))
    assert "smsbot_reply_seconds_bucket" in named and "smsbot_api_request_seconds_count" in named
    with running_bot(redis_server.url, tmp_path) as bot:
        text = bot.metrics_text()
    exported, sampled = exported_names(text), sampled_names(text)
    missing = sorted(named - exported)
    assert not missing, f"the dashboard queries metrics no bot exports: {missing}"
    # after the traffic every one has a sample, not just a declaration (an empty panel is a broken panel)
    assert not sorted(named - sampled)
