"""Assemble one bot instance from settings: store, router, dispatcher, outbox sender, transport.

`Bot.run()` serves in the calling thread until `request_stop()`; `Bot.start()` runs it in a
background thread (tests, the demo). Signal handling is the caller's (`smsbot.daemon`): signals
only call `request_stop()`; a second one calls `request_stop(force=True)`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import commands
from smsbot import log
from smsbot.config import Settings
from smsbot.dispatch import Dispatcher, MoOutcome
from smsbot.events import EventConsumer, ensure_group
from smsbot.outbox import OutboxSender, SequenceGenerator
from smsbot.router import Router
from smsbot.store import Store
from smsbot.transport import Transport

_log = log.get("smsbot.mo")


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


def build_store(settings: Settings) -> Store:
    cmds = commands.all_commands()
    store = Store(settings, [c.lua_file for c in cmds if c.lua_file])
    return store


class Bot:
    def __init__(self, settings: Settings, *, instance: str | None = None):
        self.settings = settings
        self.instance = instance or instance_name()
        self.stop_event = threading.Event()
        self.store = build_store(settings)
        self.store.load_scripts()
        self.store.ensure_groups()
        self.router = Router(settings, commands.all_commands())
        self.sequences = SequenceGenerator()
        self.dispatcher = Dispatcher(settings, self.store, self.router, self.instance)
        self.sender = OutboxSender(settings, self.router, self.sequences)
        self.transport = Transport(
            settings, self.store, self.dispatcher, self.sender, self.sequences, self.stop_event, self.instance,
            on_mo=self._log_mo,
        )
        self._thread: threading.Thread | None = None
        self.mo_count = 0
        self.consumers = self._event_consumers()

    def _event_consumers(self) -> list[EventConsumer]:
        enabled = {name for sc in self.settings.short_codes for name in sc.commands}
        out: list[EventConsumer] = []
        seen: set[str] = set()
        for cmd in self.router.commands.values():
            if cmd.name not in enabled:
                continue
            for source in cmd.event_sources(self.settings, self.store):
                if source.name not in seen:
                    seen.add(source.name)
                    ensure_group(self.store.redis, source.stream, source.group)
                    out.append(EventConsumer(self.store.redis, source, self.instance, self.stop_event))
        return out

    def _log_mo(self, oc: MoOutcome, latency_ms: float) -> None:
        self.mo_count += 1
        _log.info(
            "mo", correlation=oc.correlation, msisdn=oc.inbound.msisdn, short_code=oc.inbound.short_code,
            command=oc.command, outcome=oc.outcome, status=int(oc.status), latency_ms=latency_ms,
        )

    def run(self) -> None:
        _log.info("bot_starting", instance=self.instance, redis=_safe_url(self.store.url))
        for consumer in self.consumers:
            consumer.start()
        try:
            self.transport.run()
        finally:
            self.teardown()

    def teardown(self) -> None:
        self.stop_event.set()
        for consumer in self.consumers:
            consumer.join(5)
        self.store.close()
        _log.info("bot_stopped", instance=self.instance)

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
