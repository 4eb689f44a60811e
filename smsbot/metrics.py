"""Prometheus metrics and the HTTP endpoint that serves them with ``/healthz``.

One `Metrics` object per bot (its own registry, so tests can run several bots in a process).
``GET /metrics`` is the Prometheus text format; ``GET /healthz`` answers 200 when the SMSC is bound
and Redis answers PING, 503 otherwise, with a small JSON body saying which.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


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

    def render(self) -> bytes:
        self.mo_hot.publish()
        self.mt_hot.publish()
        return generate_latest(self.registry)


class MetricsServer:
    """Serves /metrics and /healthz on (host, port) in a daemon thread."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict[str, bool]], host: str, port: int):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path.startswith("/metrics"):
                    outer._before_scrape()
                    body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    checks = health()
                    ok = all(checks.values())
                    body, ctype, code = json.dumps({"ok": ok, **checks}).encode(), "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        try:
            # one thread answers every request, in turn: scrapes are rare, and the gauges refreshed
            # before one reuse that thread's Redis connections (Store.hot_connection)
            self.server = HTTPServer((host, port), Handler)
        except OSError as e:  # port taken or not allowed: one line naming metrics.port (smsbot.ports), exit 2
            from smsbot import ports

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
