"""Assemble one bot instance from settings: store, router, dispatcher, outbox sender, transport,
event consumers, metrics; and reload what can change without dropping the bind.

`Bot.run()` serves in the calling thread until `request_stop()`; `Bot.start()` runs it in a
background thread (tests, the demo). Signal handling is the caller's (`smsbot.daemon`): signals
only call `request_stop()` / `request_reload()`; a second stop signal calls `request_stop(force=True)`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import commands
from smsbot import config as config_mod
from smsbot import log
from smsbot.config import Settings
from smsbot.dispatch import Dispatcher, MoOutcome
from smsbot.events import EventConsumer, ensure_group
from smsbot.messages import Receipt
from smsbot.metrics import Metrics, MetricsServer
from smsbot.outbox import OutboxSender, OutgoingMt
from smsbot.session import SequenceGenerator
from smsbot.router import Router
from smsbot.store import Store
from smsbot.transport import Transport

_log = log.get("smsbot.mo")
_life = log.get("smsbot.bot")


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


def build_store(settings: Settings) -> Store:
    sources = commands.lua_sources()  # the registry's Lua: the billing steps and every command package's fragment
    # Redis faults (smsbot.redis_supervisor): a Redis that does not answer is one RedisProblem (one line, exit 2/3)
    from smsbot import redis_supervisor

    return redis_supervisor.open_store(settings, lambda: Store(settings, sources))


class Bot:
    def __init__(self, settings: Settings, *, instance: str | None = None, config_path: str | Path | None = None):
        self.settings = settings
        self.config_path = config_path
        self.instance = instance or instance_name()
        self.stop_event = threading.Event()
        self.metrics = Metrics()
        commands.validate(settings)  # the command registry's checks (config.load ran them if it was imported)
        for key, note in config_mod.notes(settings):  # accepted, deprecated (e.g. a command's former name)
            _life.warning("config_deprecated", key=key, note=note)
        self.store = build_store(settings)
        self.store.load_scripts()
        self.store.ensure_groups()
        self.router = Router(settings, commands.all_commands())
        self.sequences = SequenceGenerator()
        self.dispatcher = Dispatcher(settings, self.store, self.router, self.instance)
        self.sender = OutboxSender(settings, self.router, self.sequences, self.store.keys)
        self.sender.on_sent = self._on_sent
        self.sender.on_failed = lambda mt, status: self.metrics.mt_failed.labels(hex(status)).inc()
        self.sender.on_retry = lambda reason: self.metrics.mt_retried.labels(reason).inc()
        self.transport = Transport(
            settings, self.store, self.dispatcher, self.sender, self.sequences, self.stop_event, self.instance,
            on_batch=self._on_batch, on_receipt=self._on_receipt,
        )
        self.transport.on_bound = self._on_bound
        self.transport.on_reload = self._apply_reload
        self._thread: threading.Thread | None = None
        self.mo_count = 0
        self._consumer_stop = threading.Event()
        self.consumers = self._event_consumers()
        self.metrics_server: MetricsServer | None = None
        self._log_mo = logging.getLogger("smsbot.mo").isEnabledFor(logging.INFO)

    # -- event streams ------------------------------------------------------------------------------
    def _event_consumers(self) -> list[EventConsumer]:
        enabled = {c.name for sc in self.settings.short_codes for c in self.router.commands_for(sc.code)}
        out: list[EventConsumer] = []
        seen: set[str] = set()
        for cmd in self.router.commands.values():
            if cmd.name not in enabled:
                continue
            for source in cmd.event_sources(self.settings, self.store):
                if source.name not in seen:
                    seen.add(source.name)
                    ensure_group(self.store.redis, source.stream, source.group)
                    out.append(EventConsumer(self.store.redis, source, self.instance, self._consumer_stop))
        return out

    def _stop_consumers(self) -> None:
        self._consumer_stop.set()
        for consumer in self.consumers:
            consumer.join(5)

    # -- callbacks from the transport (its thread) ---------------------------------------------------
    def _on_batch(self, outcomes: Sequence[MoOutcome], elapsed: float) -> None:
        self.mo_count += len(outcomes)
        m = self.metrics
        m.latency.observe(elapsed)
        m.batch_size.observe(len(outcomes))
        latency_ms = round(elapsed * 1000, 2)
        add = m.mo_hot.add
        for oc in outcomes:
            add((oc.command or "-", oc.outcome or "-"))
        if self._log_mo:
            for oc in outcomes:
                _log.info(
                    "mo", correlation=oc.correlation, msisdn=oc.inbound.msisdn, short_code=oc.inbound.short_code,
                    command=oc.command, outcome=oc.outcome, status=int(oc.status), latency_ms=latency_ms,
                )

    def _on_sent(self, mt: OutgoingMt) -> None:
        self.metrics.mt_hot.add((mt.tpl,))

    def _on_receipt(self, receipt: Receipt) -> None:
        self.metrics.receipts.labels(receipt.state).inc()
        _log.info("delivery_receipt", message_id=receipt.message_id, state=receipt.state, err=receipt.error)

    def _on_bound(self, bound: bool) -> None:
        self.metrics.bound.set(1 if bound else 0)
        if not bound:
            self.metrics.reconnects.inc()

    def health(self) -> dict[str, bool]:
        try:
            redis_ok = bool(self.store.redis.ping())
        except Exception:
            redis_ok = False
        return {"smsc_bound": self.transport.bound.is_set(), "redis": redis_ok}

    def _refresh_gauges(self) -> None:
        self.metrics.outbox_backlog.set(self.sender.backlog)
        self.metrics.outbox_inflight.set(self.sender.inflight)
        self.metrics.outbox_depth.set(self.store.outbox_depth())
        enabled = {c.name: c for sc in self.settings.short_codes for c in self.router.commands_for(sc.code)}
        for cmd in enabled.values():  # the commands' own gauges (e.g. overdue complaint tickets)
            cmd.refresh_metrics(self.metrics, self.store, self.settings)

    # -- reload (SIGHUP) ------------------------------------------------------------------------------
    def request_reload(self) -> None:
        """Ask the transport thread to reload at its next loop turn (safe from a signal handler)."""
        self.transport.reload_requested.set()

    def _apply_reload(self) -> bool:
        """Load the config again; swap templates, catalogue, menu, plans and thresholds; keep the bind.

        An invalid configuration is refused and logged; the running one stays.
        """
        if self.config_path is None:
            _life.warning("reload_ignored", reason="started without a config file path")
            return False
        try:
            new = config_mod.reload(self.settings, self.config_path)
        except config_mod.ConfigError as e:
            _life.error("reload_refused", errors=e.lines())  # as `config check` prints them: key (line N): problem
            return False
        # which changed keys take effect now and which need a restart (smsbot.daemon.plan_reload); logged below
        from smsbot.daemon import plan_reload

        plan = plan_reload(self.settings, new)
        new = plan.settings
        router = Router(new, commands.all_commands())
        self.settings = new
        self.router = router
        self.dispatcher.settings, self.dispatcher.router = new, router
        self.sender.settings, self.sender.router = new, router
        self.transport.apply_settings(new)
        self._stop_consumers()
        self._consumer_stop = threading.Event()
        self.consumers = self._event_consumers()
        for consumer in self.consumers:
            consumer.start()
        plan.log(_life, services=len(new.services), short_codes=[sc.code for sc in new.short_codes])
        return True

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self) -> None:
        _life.info("bot_starting", instance=self.instance, redis=_safe_url(self.store.url))
        m = self.settings.metrics
        if m.port:
            self.metrics_server = MetricsServer(self.metrics, self.health, m.host, m.port)
            self.metrics_server.before_scrape = self._refresh_gauges
            self.metrics_server.start()
            _life.info("metrics_listening", host=m.host, port=self.metrics_server.port)
        if self.settings.api.port:  # the HTTP API (smsbot.api) in this process, on its own Redis connection
            from smsbot.api.app import start_in_thread

            self.api_server = start_in_thread(self.settings)
            _life.info("api_listening", host=self.settings.api.host, port=self.settings.api.port)
        for consumer in self.consumers:
            consumer.start()
        # bundled Redis: restart it when it dies (smsbot.redis_supervisor); None with redis.url set
        from smsbot import redis_supervisor

        self.redis_supervisor = redis_supervisor.for_settings(self.settings, self.instance)
        if self.redis_supervisor is not None:
            self.redis_supervisor.start()
        try:
            self.transport.run()
        finally:
            self.teardown()

    def teardown(self) -> None:
        self.stop_event.set()
        if getattr(self, "redis_supervisor", None) is not None:  # smsbot.redis_supervisor
            self.redis_supervisor.stop()
        self._stop_consumers()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if getattr(self, "api_server", None) is not None:
            self.api_server.should_exit = True
        self.store.close()
        _life.info("bot_stopped", instance=self.instance)

    def request_stop(self, force: bool = False) -> None:
        self.stop_event.set()
        if force:
            self.transport.force_stop.set()

    # -- for tests and the demo -------------------------------------------------------------------
    def start(self) -> "Bot":
        self._thread = threading.Thread(target=self.run, name=f"bot-{self.instance}", daemon=True)
        self._thread.start()
        return self

    def wait_bound(self, timeout: float = 10.0) -> bool:
        return self.transport.bound.wait(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)


def _safe_url(url: str) -> Any:
    """Redis URL without credentials."""
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
