"""The webhooks of one bot instance: its collector thread and each endpoint's sender threads, on a
Redis connection pool of their own (never the SMS path's), and their metrics.

`smsbot.app.Bot` builds one when ``webhooks:`` lists an endpoint, starts it with the bot and stops
it at teardown. Configuration changes to ``webhooks`` take effect at the next start.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

from smsbot import connections
from smsbot.config import Settings
from smsbot.metrics import Metrics
from smsbot.webhooks.collector import Collector
from smsbot.webhooks.jobs import Jobs
from smsbot.webhooks.sender import EndpointSender, Outcome


class WebhookService:
    def __init__(self, settings: Settings, metrics: Metrics, consumer: str, *,
                 ticket: Callable[[Any, str], dict[str, Any] | None] = lambda _store, _id: None,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random,
                 claim_idle_ms: int = 10_000):
        self.settings = settings
        self.metrics = metrics
        self.store = connections.store(settings)  # its own connection pool: a slow webhook path holds none of the SMS path's
        self.stop_event = threading.Event()
        self.jobs = Jobs(self.store)
        self.senders = {ep.name: EndpointSender(ep, self.jobs, self.stop_event, clock=clock, rand=rand, on_attempt=self._attempted)
                        for ep in settings.webhooks}
        self.collector = Collector(
            self.store.redis, self.store.keys, self.jobs, settings.webhooks, consumer, self.stop_event,
            cluster=self.store.cluster, ticket=lambda ticket_id: ticket(self.store, ticket_id), clock=clock, claim_idle_ms=claim_idle_ms,
            on_collected=lambda kind, n: metrics.webhook_events.labels(kind).inc(n),
            wake=lambda name: self.senders[name].wakeup.set())
        self.collector.ensure_groups()

    def _attempted(self, endpoint: str, out: Outcome, result: str) -> None:
        m = self.metrics
        m.webhook_seconds.labels(endpoint).observe(out.seconds)
        m.webhook_deliveries.labels(endpoint, result).inc()
        if not out.ok:
            m.webhook_failures.labels(endpoint, out.reason).inc()

    def refresh_metrics(self) -> None:
        """Backlog and dead letters of every endpoint (all instances: they are in Redis)."""
        for name in self.senders:
            backlog, dead = self.jobs.counts(name)
            self.metrics.webhook_backlog.labels(name).set(backlog)
            self.metrics.webhook_dead_letters.labels(name).set(dead)

    def start(self) -> "WebhookService":
        self.collector.start()
        for sender in self.senders.values():
            sender.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; a POST in flight finishes (at most its endpoint's timeout) or its lease lapses."""
        self.stop_event.set()
        for sender in self.senders.values():
            sender.wakeup.set()
        self.collector.join(timeout)
        for sender in self.senders.values():
            sender.join(timeout)
        self.store.close()
