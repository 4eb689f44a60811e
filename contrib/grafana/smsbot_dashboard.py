"""The smsbot Grafana dashboard, written with Grafana's grafana-foundation-sdk (Grafana 11.6 schema).

    python contrib/grafana/smsbot_dashboard.py            # prints the JSON
    python contrib/grafana/smsbot_dashboard.py --write    # rewrites contrib/grafana/smsbot-dashboard.json

The committed JSON is this module's output (tests/test_dashboard.py regenerates it and compares, and
checks that every metric a panel's query names is exported by a running bot). Import the JSON in
Grafana (Dashboards > New > Import) and pick the Prometheus data source that scrapes the bots'
``metrics.port`` (and the API processes' ``/metrics``). ``$instance`` picks bot instances.

`PANELS` holds every query as data (title, unit, PromQL, legend), so the test reads the queries
without Grafana; `build()` lays them out.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

JSON_PATH = Path(__file__).with_name("smsbot-dashboard.json")
UID = "smsbot-overview"
SEL = 'instance=~"$instance"'  # the bot instances picked at the top of the dashboard
FAILED_RECEIPT_STATES = "UNDELIV|REJECTD|EXPIRED|DELETED|UNKNOWN"
# smsbot_webhook_backlog: events waiting for webhook delivery, a series per configured endpoint (smsbot.webhooks).
WEBHOOK_BACKLOG = "smsbot_webhook_backlog"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    max: float | None = None


def q(expr: str, legend: str) -> Query:
    return Query(expr, legend)


def rate(metric: str, by: str = "", sel: str = SEL) -> str:
    grouping = f"sum by ({by}) " if by else "sum "
    return f"{grouping}(rate({metric}{{{sel}}}[$__rate_interval]))"


def quantile(phi: float, metric: str, by: str = "le", sel: str = SEL) -> str:
    return f"histogram_quantile({phi}, sum by ({by}) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))"


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    ("Health", (
        PanelSpec("SMSC bound", "Instances bound to the SMSC (smsbot_smsc_bound).", "none",
                  (q(f"sum(smsbot_smsc_bound{{{SEL}}})", "bound"),), kind="stat", width=6),
        PanelSpec("Redis answering", "Instances whose Redis answered PING at the last scrape.", "none",
                  (q(f"sum(smsbot_redis_up{{{SEL}}})", "up"),), kind="stat", width=6),
        PanelSpec("Oldest unsent reply", "Age of the oldest entry waiting in the outbox and queue streams (all instances).", "s",
                  (q(f"max(smsbot_outbox_oldest_age_seconds{{{SEL}}})", "oldest"),), kind="stat", width=6),
        PanelSpec("Lease held", "Senders that surely hold their lease (may send).", "none",
                  (q(f"sum(smsbot_lease_held{{{SEL}}})", "held"),), kind="stat", width=6),
    )),
    ("SMS traffic", (
        PanelSpec("MOs handled per second", "MOs by command (smsbot_mo_total).", "ops",
                  (q(rate("smsbot_mo_total", "command"), "{{command}}"),)),
        PanelSpec("MTs per second", "MTs the SMSC accepted, refused for good, and parts retried.", "ops",
                  (q(rate("smsbot_mt_total"), "accepted"), q(rate("smsbot_mt_failed_total"), "refused"),
                   q(rate("smsbot_mt_retried_total"), "retried parts"))),
        PanelSpec("Reply latency", "MO replies, from the reply stored in Redis to the SMSC accepting its last part "
                  "(p50, p99); and the MO batches, from read to stored (p99).", "s",
                  (q(quantile(0.5, "smsbot_reply_seconds"), "reply p50"), q(quantile(0.99, "smsbot_reply_seconds"), "reply p99"),
                   q(quantile(0.99, "smsbot_mo_batch_seconds"), "MO batch p99"))),
        PanelSpec("Window use", "submit_sm in flight or accepted but not yet recorded, over smsc.window, per instance.",
                  "percentunit", (q(f"sum by (instance) (smsbot_smsc_window_used{{{SEL}}}) / sum by (instance) (smsbot_smsc_window{{{SEL}}})",
                                    "{{instance}}"),), max=1),
    )),
    ("Queues", (
        PanelSpec("Outbox depth", "Replies written and not yet sent: in Redis (all instances), and queued or in flight "
                  "in each instance.", "short",
                  (q(f"max(smsbot_outbox_depth{{{SEL}}})", "in Redis"),
                   q(f"sum by (instance) (smsbot_outbox_backlog{{{SEL}}})", "queued in {{instance}}"),
                   q(f"sum by (instance) (smsbot_outbox_inflight{{{SEL}}})", "in flight from {{instance}}")), width=8),
        PanelSpec("Oldest unsent reply", "Age of the oldest entry of the outbox and queue streams: the queue lag.", "s",
                  (q(f"max(smsbot_outbox_oldest_age_seconds{{{SEL}}})", "oldest"),), width=8),
        PanelSpec("Webhook backlog", "Events waiting for webhook delivery, all instances (smsbot_webhook_backlog; a series "
                  "per configured endpoint).", "short", (q(f"max({WEBHOOK_BACKLOG}{{{SEL}}})", "waiting"),), width=8),
    )),
    ("Delivery receipts", (
        PanelSpec("Receipts by state per second", "Delivery receipts the SMSC sent (smsc.registered_delivery: 1).", "ops",
                  (q(rate("smsbot_receipts_total", "state"), "{{state}}"),)),
        PanelSpec("Receipts failing", f"Share of receipts in a failed state ({FAILED_RECEIPT_STATES.replace('|', ', ')}).",
                  "percentunit",
                  (q(f'sum(rate(smsbot_receipts_total{{state=~"{FAILED_RECEIPT_STATES}",{SEL}}}[$__rate_interval])) / '
                     f"sum(rate(smsbot_receipts_total{{{SEL}}}[$__rate_interval]))", "failed"),), max=1),
    )),
    ("Binds, Redis, lease", (
        PanelSpec("SMPP binds", "Bound links by kind, and reconnects.", "short",
                  (q(f"sum by (instance, kind) (smsbot_smsc_binds{{{SEL}}})", "{{instance}} {{kind}}"),
                   q(f"sum by (instance) (increase(smsbot_smsc_reconnects_total{{{SEL}}}[$__rate_interval]))",
                     "reconnects {{instance}}")), width=8),
        PanelSpec("Redis", "Redis answering PING, failed round trips per second, bundled server restarts.", "short",
                  (q(f"min by (instance) (smsbot_redis_up{{{SEL}}})", "up {{instance}}"),
                   q(rate("smsbot_redis_errors_total", "instance"), "failed round trips/s {{instance}}"),
                   q(f"sum by (instance) (increase(smsbot_redis_restarts_total{{{SEL}}}[$__rate_interval]))",
                     "restarts {{instance}}")), width=8),
        PanelSpec("Lease", "1 while a sender surely holds its lease; lost leases (a new sender name each time).", "short",
                  (q(f"min by (instance) (smsbot_lease_held{{{SEL}}})", "held {{instance}}"),
                   q(f"sum by (instance) (increase(smsbot_lease_lost_total{{{SEL}}}[$__rate_interval]))", "lost {{instance}}")),
                  width=8),
    )),
    ("HTTP API", (
        PanelSpec("API requests per second", "By route template and status (smsbot api, or smsbot run with api.port).", "reqps",
                  (q("sum by (route, status) (rate(smsbot_api_request_seconds_count[$__rate_interval]))", "{{route}} {{status}}"),)),
        PanelSpec("API latency", "From the request read to the response's end (p50, p99).", "s",
                  (q(quantile(0.5, "smsbot_api_request_seconds", sel=""), "p50"),
                   q(quantile(0.99, "smsbot_api_request_seconds", sel=""), "p99"),
                   q(quantile(0.99, "smsbot_api_request_seconds", by="le, route", sel=""), "p99 {{route}}"))),
    )),
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _panel(spec: PanelSpec, panel_id: int) -> Timeseries | Stat:
    panel = (Stat() if spec.kind == "stat" else Timeseries().line_width(1).fill_opacity(10))
    panel = panel.id(panel_id).title(spec.title).description(spec.description).unit(spec.unit).datasource(DATASOURCE)
    panel = panel.height(4 if spec.kind == "stat" else 8).span(spec.width)
    if spec.max is not None:
        panel = panel.min(0).max(spec.max)
    elif spec.kind == "timeseries":
        panel = panel.min(0)
    for i, query in enumerate(spec.queries):
        panel = panel.with_target(Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + i)))
    return panel


def build() -> Dashboard:
    board = (
        Dashboard("smsbot").uid(UID).tags(["smsbot", "sms", "smpp"]).editable()
        .description("smsbot: SMS traffic, reply latency, queues, receipts, binds, Redis, lease and the HTTP API.")
        .time("now-1h", "now").refresh("30s").timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(QueryVariable("instance").label("Instance").datasource(DATASOURCE)
                       .query("label_values(smsbot_smsc_bound, instance)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                       .multi(True).include_all(True).all_value(".*"))
    )
    ids = iter(range(1, 1000))  # Grafana wants each panel's id unique
    for title, panels in ROWS:
        board = board.with_row(Row(title).id(next(ids)))
        for spec in panels:
            board = board.with_panel(_panel(spec, next(ids)))
    return board


def queries() -> list[str]:
    """Every PromQL expression of the dashboard, as written (with Grafana's variables)."""
    return [query.expr for _title, panels in ROWS for spec in panels for query in spec.queries]


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        JSON_PATH.write_text(render(), encoding="utf-8")
        print(f"wrote {JSON_PATH}")
    elif sys.argv[1:]:
        sys.exit("usage: smsbot_dashboard.py [--write]")
    else:
        sys.stdout.write(render())
