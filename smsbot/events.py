"""Inbound event streams (orders, on-demand uses, usage reports): how the bot reads them, through a
consumer group, applied, then XACKed. What an event holds, and how one is written, belongs to the
command that consumes it (`commands.orders.events`, `commands.usage.event_fields`).

Several instances share a stream: each reads with its own consumer name in one group, so every
event goes to one of them; an event is acknowledged only after its handler has stored its effect,
and entries a dead instance read but never acknowledged are claimed by another after
``claim_idle_ms`` (XAUTOCLAIM). Handlers must be idempotent (an event can be applied twice when
an instance dies between effect and XACK): they key their effects by the event's own id.

A command module that consumes a stream returns `EventSource`s from ``Command.event_sources``;
the bot runs one `EventConsumer` thread per source.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import redis

from smsbot import log

_log = log.get("smsbot.events")

Event = tuple[str, dict[str, str]]  # (entry id, fields)


@dataclass(frozen=True)
class EventSource:
    """A stream, its consumer group, and the function applying a batch of its events.

    `apply(events)` returns the ids it has durably handled (to be XACKed); an id it leaves out
    (e.g. Redis failed mid-way) is delivered again later. Malformed events should be recorded and
    returned as handled, or they would come back forever.
    """

    name: str
    stream: str
    group: str
    apply: Callable[[list[Event]], list[str]]


def _s(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


def read_batch(client: redis.Redis, source: EventSource, consumer: str, count: int, block_ms: int | None) -> list[Event]:
    try:
        res = client.xreadgroup(source.group, consumer, {source.stream: ">"}, count=count, block=block_ms)
    except redis.ResponseError as e:
        if "NOGROUP" not in str(e):
            raise
        ensure_group(client, source.stream, source.group)
        return []
    out: list[Event] = []
    for _stream, entries in res or []:
        for entry_id, fields in entries:
            if fields is not None:
                out.append((_s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
    return out


def claim_stale(client: redis.Redis, source: EventSource, consumer: str, min_idle_ms: int, count: int) -> list[Event]:
    try:
        res = client.xautoclaim(source.stream, source.group, consumer, min_idle_ms, start_id="0-0", count=count)
    except redis.ResponseError as e:
        if "NOGROUP" in str(e):
            return []
        raise
    return [(_s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in res[1] if f is not None]


def drain_once(client: redis.Redis, source: EventSource, consumer: str, count: int = 500, block_ms: int | None = None) -> int:
    """Read and apply one batch (used by the consumer thread and by tests/CLI that process synchronously)."""
    events = read_batch(client, source, consumer, count, block_ms)
    if not events:
        return 0
    done = source.apply(events)
    if done:
        client.xack(source.stream, source.group, *done)
    return len(done)


class EventConsumer:
    """One thread applying one stream until `stop` is set."""

    def __init__(self, client: redis.Redis, source: EventSource, consumer: str, stop: threading.Event,
                 *, count: int = 500, block_ms: int = 500, claim_idle_ms: int = 30_000, claim_every_s: float = 5.0,
                 retry_s: float = 1.0, log_every_s: float = 60.0):
        self.client = client
        self.source = source
        self.consumer = consumer
        self.stop = stop
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.retry_s = retry_s
        self.log_every_s = log_every_s
        self.applied = 0
        self._thread: threading.Thread | None = None

    def start(self) -> "EventConsumer":
        self._thread = threading.Thread(target=self.run, name=f"events-{self.source.name}", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        next_claim = 0.0
        # a failing stream (Redis down, a handler bug) is logged once, then at most once a minute with
        # a count, and once when it works again (``event_stream_recovered``: after_s, events)
        failing = log.Throttled(_log, "event_stream_failed", self.log_every_s, level="warning",
                                recovered_event="event_stream_recovered")
        while not self.stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + self.claim_every_s
                    stale = claim_stale(self.client, self.source, self.consumer, self.claim_idle_ms, self.count)
                    if stale:
                        done = self.source.apply(stale)
                        if done:
                            self.client.xack(self.source.stream, self.source.group, *done)
                        self.applied += len(done)
                self.applied += drain_once(self.client, self.source, self.consumer, self.count, self.block_ms)
                failing.recovered(stream=self.source.name)
            except Exception as e:  # Redis down or a handler bug: keep the thread alive, retry later
                failing.hit(stream=self.source.name, error=repr(e))
                self.stop.wait(self.retry_s)
