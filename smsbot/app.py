"""Assemble one bot instance from settings: store, router, dispatcher, outbox sender, transport,
event consumers, webhooks (`smsbot.webhooks`), metrics; and reload what can change without
dropping the bind.

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
from typing import Any, Callable, Sequence

import redis

import commands
from commands.complaints import tickets
from smsbot import config as config_mod
from smsbot import connections, control, log, queue_lag, redis_supervisor, status_charts, submits, topology
from smsbot.config import Settings
from smsbot.delivery import Delivery
from smsbot.dispatch import Dispatcher, MoOutcome
from smsbot.events import EventConsumer, ensure_group
from smsbot.messages import Receipt
from smsbot.live import Live
from smsbot.metrics import ApiMetrics, Metrics, MetricsServer
from smsbot.outbox import OutboxSender, OutgoingMt
from smsbot.pipeline import Pipeline
from smsbot.reload import plan_reload
from smsbot.cmpp_session import open_cmpp_links
from smsbot.session import SequenceGenerator, open_links
from smsbot.router import Router
from smsbot.store import KeyWrite, Store
from smsbot.transport import Transport
from smsbot.webhooks import events as wh_events
from smsbot.webhooks.service import WebhookService

_log = log.get("smsbot.mo")
_life = log.get("smsbot.bot")


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


class Bot:
    def __init__(self, settings: Settings, *, instance: str | None = None, config_path: str | Path | None = None,
                 clock: Callable[[], float] = time.time):
        """`clock`: the time MOs are handled at (epoch seconds; tests set another)."""
        self.config_path = config_path
        self.instance = instance or instance_name()
        self.stop_event = threading.Event()
        self.metrics = Metrics()
        commands.validate(settings)  # the command registry's checks (config.load ran them if it was imported)
        for key, note in config_mod.notes(settings):  # accepted, deprecated (e.g. a command's former name)
            _life.warning("config_deprecated", key=key, note=note)
        self.store = connections.open_store(settings)
        topology.warn_at_start(self.store)  # durability the servers do not keep, a cluster larger than redis.shards
        self.store.load_scripts()
        self.store.ensure_groups()
        self.live = Live(settings, Router(settings, commands.all_commands()))
        self.sequences = SequenceGenerator()
        self.dispatcher = Dispatcher(self.live, self.store, clock=clock)
        self.sender = OutboxSender(
            self.live, self.sequences, self.store.keys, on_sent=self._on_sent,
            on_failed=self._on_failed,
            on_retry=lambda reason: self.metrics.mt_retried.labels(reason).inc(),
            submits=submits.for_protocol(self.live),  # submit_sm or CMPP_SUBMIT (smsc.protocol)
        )
        self.suspended = threading.Event()  # runtime control (smsbot.control): drain, unbind, stay unbound
        self.delivery = Delivery(self.live, self.store, self.sender, self.instance,
                                 describe=lambda: {**self.transport.describe(), "suspended": self.suspended.is_set()},
                                 suspended=self.suspended)
        self.pipeline = Pipeline(self.live, self.store, self.dispatcher, self.sender, self.delivery,
                                 on_batch=self._on_batch, on_receipt=self._on_receipt)
        self.transport = Transport(self.live, self.pipeline, self.delivery, self.sender, self.sequences, self.stop_event,
                                   on_bound=self._on_bound, on_reload=self._reload_and_tell, suspended=self.suspended,
                                   connect=open_cmpp_links if settings.smsc.is_cmpp else open_links)
        self._reloads = threading.Condition()  # reloads applied so far and the last outcome, for `ctl reload`
        self._reload_count, self._reload_ok = 0, False
        self.control = control.Listener(self.store.redis, self.store.keys, self.instance, {
            "suspend": self._ctl_suspend, "resume": self._ctl_resume, "log_level": self._ctl_log_level,
            "reload": self._ctl_reload}, self.control_state, self.stop_event)
        # MO replies' streams (the queue holds notices, reminders, adopted entries): their latency is
        # observed (~0.6 us an MT on the transport thread) only when someone can scrape it
        self._outboxes = frozenset(self.store.keys.all_outboxes()) if settings.metrics.port else frozenset()
        self._thread: threading.Thread | None = None
        self.mo_count = 0
        self._consumer_stop = threading.Event()
        self.consumers = self._event_consumers()
        self._notice_events = settings.webhooks_want(wh_events.NOTICE_REJECTED)  # `webhooks` changes need a restart
        self.webhooks = self._webhooks()
        self.metrics_server: MetricsServer | None = None
        self.status_sampler: status_charts.Sampler | None = None  # the /status charts' (with metrics.port)
        self._log_mo = logging.getLogger("smsbot.mo").isEnabledFor(logging.INFO)

    @property
    def settings(self) -> Settings:
        return self.live.settings

    @property
    def router(self) -> Router:
        return self.live.router

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

    # -- webhooks (smsbot.webhooks) ---------------------------------------------------------------------
    def _webhooks(self) -> Any:
        if not self.settings.webhooks:
            return None
        return WebhookService(self.settings, self.metrics, self.instance, ticket=self._ticket_record)

    def _ticket_record(self, store: Store, ticket_id: str) -> dict[str, Any] | None:
        """A complaint ticket's text and answer for the ticket events (commands/complaints owns tickets)."""
        t = tickets.get(self.settings, store, ticket_id)
        return None if t is None else {"text": t.text, "short_code": t.short_code, "answer": t.answer, "by": t.by}

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
        copies = 0
        for oc in outcomes:
            add((oc.command or "-", oc.outcome or "-"))
            copies += oc.copies
        if copies:
            m.reply_copies.inc(copies)
        if self._log_mo:
            for oc in outcomes:
                _log.info(
                    "mo", correlation=oc.correlation, msisdn=oc.inbound.msisdn, short_code=oc.inbound.short_code,
                    command=oc.command, outcome=oc.outcome, status=int(oc.status), latency_ms=latency_ms,
                    **({"copies": oc.copies} if oc.copies else {}),
                )

    def _on_failed(self, mt: OutgoingMt, status: int) -> None:
        self.metrics.mt_failed.labels(hex(status)).inc()
        if self._notice_events and wh_events.is_notice(mt.correlation):  # goes out with the MT's REJECTED record
            self.sender.add_write(KeyWrite(self.store.keys.webhook_inbound(), wh_events.rejected_notice_fields(
                mt.entry_id, mt.to, mt.short_code, mt.tpl, status, mt.correlation, int(time.time() * 1000)), 0, stream=True))

    def _on_sent(self, mt: OutgoingMt) -> None:
        self.metrics.mt_hot.add((mt.tpl,))
        if mt.stream in self._outboxes:  # the entry id is the time Redis stored the reply (ms)
            self.metrics.reply_latency.observe(max(0.0, time.time() - int(mt.entry_id.partition("-")[0]) / 1000))

    def _on_receipt(self, receipt: Receipt) -> None:
        self.metrics.receipts.labels(receipt.state).inc()
        _log.info("delivery_receipt", message_id=receipt.message_id, state=receipt.state, err=receipt.error)

    def _on_bound(self, bound: bool) -> None:
        self.metrics.bound.set(1 if bound else 0)
        if not bound:
            self.metrics.reconnects.inc()

    def _redis_answers(self) -> bool:
        try:
            return bool(self.store.redis.ping())
        except Exception:
            return False

    def health(self) -> dict[str, bool]:
        return {"smsc_bound": self.transport.bound.is_set(), "redis": self._redis_answers()}

    def refresh_gauges(self) -> None:
        """Before a scrape: the gauges and mirrored counts from what the bot's objects expose, then
        those read from Redis (skipped, with ``smsbot_redis_up`` 0, when Redis does not answer)."""
        m, sender, transport = self.metrics, self.sender, self.transport
        m.outbox_backlog.set(sender.backlog)
        m.outbox_inflight.set(sender.inflight)
        m.window.set(sender.window)
        m.window_used.set(sender.window - sender.room)
        kinds: dict[str, int] = {"transceiver": 0, "receiver": 0, "transmitter": 0}
        for link in list(transport.links) if transport.bound.is_set() else []:
            kinds[link.kind] += 1
        for kind, n in kinds.items():
            m.binds.labels(kind).set(n)
        m.lease_held.set(1 if transport.delivery.may_send(time.monotonic()) else 0)
        m.lease_lost.sync(transport.delivery.generation)
        m.redis_errors.sync(transport.delivery.suspicions)
        supervisor = getattr(self, "redis_supervisor", None)
        if supervisor is not None:
            m.redis_restarts.sync(supervisor.restarts)
        if not self._redis_answers():
            m.redis_up.set(0)
            return
        m.redis_up.set(1)
        lag = queue_lag.read(self.store)
        m.outbox_depth.set(lag.depth)
        m.outbox_oldest_age.set(lag.oldest_age_s or 0.0)
        enabled = {c.name: c for sc in self.settings.short_codes for c in self.router.commands_for(sc.code)}
        for cmd in enabled.values():  # the commands' own gauges (e.g. overdue complaint tickets)
            cmd.refresh_metrics(self.metrics, self.store, self.settings)
        if self.webhooks is not None:
            self.webhooks.refresh_metrics()

    def status_reading(self) -> status_charts.Reading:
        """The counters the /status charts sample (`smsbot.status_charts`), once a second."""
        try:
            lag: queue_lag.QueueLag | None = queue_lag.read(self.store)
        except (redis.RedisError, OSError):
            lag = None
        return status_charts.Reading(
            mo_total=self.mo_count, mt_total=self.sender.sent_total, waiting_here=self.sender.backlog,
            depth=None if lag is None else lag.depth, oldest_age_s=None if lag is None else lag.oldest_age_s,
            bound=self.transport.bound.is_set(), redis=lag is not None,
        )

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
        # which changed keys take effect now and which need a restart (smsbot.reload); logged below
        plan = plan_reload(self.settings, new)
        new = plan.settings
        self.live.swap(new, Router(new, commands.all_commands()))
        self._stop_consumers()
        self._consumer_stop = threading.Event()
        self.consumers = self._event_consumers()
        for consumer in self.consumers:
            consumer.start()
        plan.log(_life, services=len(new.services), short_codes=[sc.code for sc in new.short_codes])
        return True

    def _reload_and_tell(self) -> bool:
        ok = self._apply_reload()
        self._log_mo = logging.getLogger("smsbot.mo").isEnabledFor(logging.INFO)
        with self._reloads:
            self._reload_count += 1
            self._reload_ok = ok
            self._reloads.notify_all()
        return ok

    # -- runtime control (smsbot.control): run on its listener thread ---------------------------------
    def control_state(self) -> dict[str, Any]:
        """What `smsbot ctl status` shows: binds, window, in flight, backlog, suspended, log level."""
        sender = self.sender
        return {**self.transport.describe(), "suspended": self.suspended.is_set(), "log_level": log.current_level(),
                "window": sender.window, "window_used": sender.window - sender.room}

    def _await(self, condition: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end or self.stop_event.wait(0.05):
                return condition()
        return True

    def _ctl_suspend(self, _args: dict[str, Any]) -> tuple[bool, str]:
        if self.suspended.is_set():
            return True, "already suspended"
        self.suspended.set()
        timeout = self.settings.smsc.drain_timeout + 5.0
        if not self._await(lambda: not self.transport.bound.is_set() and self.delivery.suspension_settled, timeout):
            return False, f"suspend asked; still bound after {timeout:.0f} s"
        unsent = self.sender.backlog + self.sender.inflight
        return True, f"suspended: drained and unbound ({unsent} parts left to send after resume)"

    def _ctl_resume(self, _args: dict[str, Any]) -> tuple[bool, str]:
        if not self.suspended.is_set():
            return True, "not suspended"
        self.suspended.clear()
        if self._await(self.transport.bound.is_set, control.ANSWER_TIMEOUT_S - 2):
            return True, "resumed: bound"
        return True, "resumed: not bound yet (binding again until the SMSC answers)"

    def _ctl_log_level(self, args: dict[str, Any]) -> tuple[bool, str]:
        try:
            before = log.set_level(str(args.get("level", "")))
        except ValueError as e:
            return False, str(e)
        self._log_mo = logging.getLogger("smsbot.mo").isEnabledFor(logging.INFO)
        return True, f"log level {before} -> {log.current_level()} (a reload sets log.level again)"

    def _ctl_reload(self, _args: dict[str, Any]) -> tuple[bool, str]:
        if self.config_path is None:
            return False, "started without a config file path: nothing to reload"
        with self._reloads:
            before = self._reload_count
            self.request_reload()
            if not self._reloads.wait_for(lambda: self._reload_count > before, control.ANSWER_TIMEOUT_S - 2):
                return False, "reload requested; not applied yet (it applies while bound: suspended or reconnecting?)"
            ok = self._reload_ok
        return ok, "reloaded" if ok else "reload refused: the configuration is invalid (see the reload_refused log line)"

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self) -> None:
        _life.info("bot_starting", instance=self.instance, redis=_safe_url(self.store.url))
        m = self.settings.metrics
        if m.port:
            self.status_sampler = status_charts.Sampler(self.status_reading).start()
            self.metrics_server = MetricsServer(self.metrics, self.health, m.host, m.port,
                                                status=self.status_sampler, instance=self.instance)
            self.metrics_server.before_scrape = self.refresh_gauges
            self.metrics_server.start()
            _life.info("metrics_listening", host=m.host, port=self.metrics_server.port)
        if self.settings.api.port:  # the HTTP API (smsbot.api) in this process, on its own Redis connection
            from smsbot.api.app import start_in_thread  # FastAPI and uvicorn load only in a bot that serves the API

            self.api_server = start_in_thread(self.settings, metrics=ApiMetrics(self.metrics.registry))
            _life.info("api_listening", host=self.settings.api.host, port=self.settings.api.port)
        for consumer in self.consumers:
            consumer.start()
        self.control.start()
        if self.webhooks is not None:
            self.webhooks.start()
        # bundled Redis: restart it when it dies (smsbot.redis_supervisor); None with redis.url set
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
        self.control.join(5)
        if self.status_sampler is not None:
            self.status_sampler.stop()
        if self.webhooks is not None:
            self.webhooks.stop()
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
