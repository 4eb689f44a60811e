"""Prometheus metrics and the HTTP endpoint that serves them with ``/healthz`` and ``/status``.

One `Metrics` object per bot (its own registry, so tests can run several bots in a process);
`ApiMetrics` are the HTTP API's (in the bot's registry when ``smsbot run`` serves the API, else the
API process's own). ``GET /metrics`` is the Prometheus text format; ``GET /healthz`` answers 200
when the SMSC is bound and Redis answers PING, 503 otherwise, with a small JSON body saying which;
``GET /status`` and its parts are the live charts of `smsbot.status_charts`.

The README's Operations section lists every metric (name, labels, meaning); the Grafana dashboard
(``contrib/grafana``) and the alert rules (``contrib/prometheus``) query them by these names, and
``tests/test_dashboard.py`` checks each of their names against a running bot's ``/metrics``.
"""

from __future__ import annotations

import bisect
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from smsbot import ports, status_charts


class HotCounter:
    """A labelled Counter fed from ONE thread's hot path without a lock per increment.

    `add` is a plain dict update (the transport thread counts every MO and MT); `publish` (any
    thread: `Metrics.render` before each scrape) adds to the Prometheus counter what was counted
    since the last publish. Totals only grow, so a publish racing an `add` loses nothing: the
    increment shows in the next scrape."""

    def __init__(self, counter: Counter):
        self._counter = counter
        self._totals: dict[tuple[str, ...], int] = {}
        self._published: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()  # scrapes may run in parallel threads

    def add(self, labels: tuple[str, ...], n: int = 1) -> None:
        totals = self._totals
        totals[labels] = totals.get(labels, 0) + n

    def publish(self) -> None:
        with self._lock:
            for labels, total in dict(self._totals).items():  # a copy: the hot thread may add keys meanwhile
                delta = total - self._published.get(labels, 0)
                if delta:
                    self._counter.labels(*labels).inc(delta)
                    self._published[labels] = total


class Mirror:
    """A Counter that follows a count an object keeps itself (it only grows): `sync(total)` before a scrape."""

    def __init__(self, counter: Counter):
        self.counter = counter
        self._published = 0
        self._lock = threading.Lock()  # scrapes may run in parallel threads

    def sync(self, total: int) -> None:
        with self._lock:
            if total > self._published:
                self.counter.inc(total - self._published)
                self._published = total


class HotHistogram:
    """A Histogram observed from ONE thread (the transport's, or the API's event loop) without a lock
    per observation; with `labelnames`, one per label values.

    `observe` adds to plain lists of bucket counts; the registry reads them at scrape time
    (`collect`, any thread). A scrape racing an `observe` may miss that observation, never more:
    it shows in the next scrape."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry,
                 labelnames: tuple[str, ...] = ()):
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._bounds = sorted(buckets)
        self._series: dict[tuple[str, ...], list] = {}  # label values -> [bucket counts (the last is +Inf), sum]
        registry.register(self)

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = [[0] * (len(self._bounds) + 1), 0.0]
        series[0][bisect.bisect_left(self._bounds, value)] += 1
        series[1] += value

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        series = dict(self._series) or ({(): [[0] * (len(self._bounds) + 1), 0.0]} if not self.labelnames else {})
        for labels, (counts, total_sum) in series.items():
            cumulative, running = [], 0
            for bound, n in zip([*map(floatToGoString, self._bounds), "+Inf"], list(counts)):
                running += n
                cumulative.append((bound, running))
            family.add_metric(list(labels), cumulative, total_sum)
        return [family]


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.mo = Counter("smsbot_mo_total", "MOs handled", ["command", "outcome"], registry=r)
        self.mt = Counter("smsbot_mt_total", "MTs accepted by the SMSC (all parts)", ["template"], registry=r)
        self.mt_failed = Counter("smsbot_mt_failed_total", "MTs rejected permanently", ["status"], registry=r)
        self.mt_retried = Counter("smsbot_mt_retried_total", "submit_sm parts retried (throttled, queue full, lost link)", ["reason"], registry=r)
        self.latency = Histogram(
            "smsbot_mo_batch_seconds", "time from reading a batch of MOs to having stored their effects",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=r,
        )
        self.batch_size = Histogram("smsbot_mo_batch_size", "MOs per batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500), registry=r)
        self.outbox_backlog = Gauge("smsbot_outbox_backlog", "parts queued in this instance, not yet sent", registry=r)
        self.outbox_inflight = Gauge("smsbot_outbox_inflight", "submit_sm awaiting submit_sm_resp", registry=r)
        self.outbox_depth = Gauge("smsbot_outbox_depth", "entries in the Redis outbox streams (all instances)", registry=r)
        self.tickets_overdue = Gauge("smsbot_tickets_overdue", "open complaint tickets past their promised answer time (all instances)", registry=r)
        self.bound = Gauge("smsbot_smsc_bound", "1 when bound to the SMSC", registry=r)
        self.reconnects = Counter("smsbot_smsc_reconnects_total", "reconnects to the SMSC", registry=r)
        self.receipts = Counter("smsbot_receipts_total", "delivery receipts", ["state"], registry=r)
        self.reply_copies = Counter("smsbot_reply_copies_total",
                                    "replies sent again to a suspected redelivery (the first had gone out)", registry=r)
        self.events = Counter("smsbot_events_total", "stream events applied", ["stream"], registry=r)
        # webhooks (smsbot.webhooks): events collected by this instance, its attempts, and what waits in Redis
        self.webhook_events = Counter("smsbot_webhook_events_total", "webhook events collected from the source streams", ["type"], registry=r)
        self.webhook_deliveries = Counter(
            "smsbot_webhook_deliveries_total",
            "webhook attempts by endpoint and result: delivered, retry (failed, tried again later), dead (failed the last "
            "attempt: dead-lettered), gone (failed, but delivered meanwhile by another sender)", ["endpoint", "result"], registry=r)
        self.webhook_failures = Counter("smsbot_webhook_failures_total", "failed webhook attempts by endpoint and reason "
                                        "(timeout, connection, http_3xx, http_4xx, http_5xx)", ["endpoint", "reason"], registry=r)
        self.webhook_seconds = Histogram("smsbot_webhook_seconds", "time of one webhook attempt", ["endpoint"],
                                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=r)
        self.webhook_backlog = Gauge("smsbot_webhook_backlog", "webhook events not yet delivered, waiting or in flight (all instances)",
                                     ["endpoint"], registry=r)
        self.webhook_dead_letters = Gauge("smsbot_webhook_dead_letters", "webhook events that failed every attempt (all instances)",
                                          ["endpoint"], registry=r)
        self.mo_hot = HotCounter(self.mo)  # the transport thread counts MOs and MTs through these
        self.mt_hot = HotCounter(self.mt)
        self.reply_latency = HotHistogram(  # observed on the transport thread (`Bot._on_sent`)
            "smsbot_reply_seconds", "MO replies: from the reply stored (its outbox entry's id, Redis clock) to the SMSC accepting its last part",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0), r,
        )
        # set before each scrape (`Bot.refresh_gauges`) from what the bot's objects expose
        self.outbox_oldest_age = Gauge("smsbot_outbox_oldest_age_seconds", "age of the oldest unsent entry of the outbox and queue streams (all instances); 0 when none", registry=r)
        self.window = Gauge("smsbot_smsc_window", "submit_sm that may be unanswered or unrecorded at once (smsc.window)", registry=r)
        self.window_used = Gauge("smsbot_smsc_window_used", "submit_sm in flight plus those accepted but not yet recorded (at most smsc.window)", registry=r)
        self.binds = Gauge("smsbot_smsc_binds", "bound SMPP links by kind", ["kind"], registry=r)
        self.redis_up = Gauge("smsbot_redis_up", "1 when Redis answered PING at this scrape", registry=r)
        self.redis_errors = Mirror(Counter("smsbot_redis_errors_total", "Redis round trips of MO batches, receipts and records that failed", registry=r))
        self.redis_restarts = Mirror(Counter("smsbot_redis_restarts_total", "times this bot restarted the bundled redis-server after it died", registry=r))
        self.lease_held = Gauge("smsbot_lease_held", "1 while this sender surely holds its lease (it may send)", registry=r)
        self.lease_lost = Mirror(Counter("smsbot_lease_lost_total", "times this sender found its lease gone and became a new sender", registry=r))

    def render(self) -> bytes:
        self.mo_hot.publish()
        self.mt_hot.publish()
        return generate_latest(self.registry)


class ApiMetrics:
    """The HTTP API's requests, by method, route template (never the path: it may hold a phone number)
    and status: one histogram of their durations, whose ``_count`` counts them. Observed on the
    API's event loop thread (`smsbot.api.app.RequestMetrics`), lock-free (~0.5 us a request)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = HotHistogram(
            "smsbot_api_request_seconds", "HTTP API requests: from the request read to the response's end",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), self.registry, ("method", "route", "status"),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.observe(seconds, (method, route, str(status)))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics, /healthz and, given a `smsbot.status_charts.Sampler`, the /status page, on
    (host, port) in a daemon thread."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict[str, bool]], host: str, port: int,
                 status: Any = None, instance: str = ""):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                extra: dict[str, str] = {}
                if path == "/metrics":
                    outer._before_scrape()
                    body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
                elif path == "/healthz":
                    checks = health()
                    ok = all(checks.values())
                    body, ctype, code = json.dumps({"ok": ok, **checks}).encode(), "application/json", 200 if ok else 503
                elif status is not None and path == "/status":
                    body, ctype, code = status_charts.page(instance), "text/html; charset=utf-8", 200
                elif status is not None and path == "/status/series":
                    body, ctype, code = json.dumps(status.series()).encode(), "application/json", 200
                    extra["Cache-Control"] = "no-store"
                elif status is not None and path == "/status/charts.js":
                    body, ctype, code = status_charts.script(), "text/javascript; charset=utf-8", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        try:
            # one thread answers every request, in turn: scrapes are rare, and the gauges refreshed
            # before one reuse that thread's Redis connections (Store.hot_connection)
            self.server = HTTPServer((host, port), Handler)
        except OSError as e:  # port taken or not allowed: one line naming metrics.port (smsbot.ports), exit 2
            raise ports.explain(e, [ports.metrics_listener(host, port)]) from None
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)
        self.before_scrape: Callable[[], None] | None = None

    def _before_scrape(self) -> None:
        if self.before_scrape is not None:
            try:
                self.before_scrape()
            except Exception:  # a scrape must not fail because a gauge could not be refreshed
                pass

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
