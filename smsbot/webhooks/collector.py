"""The webhook collector: source streams -> events -> one delivery job per endpoint that wants each.

It reads every shard's audit stream and the webhook inbound stream through the consumer group
``webhooks`` (`smsbot.keys.WEBHOOKS_GROUP`): several bot instances share the work, each entry goes
to one of them. An entry is acknowledged only after its jobs are stored (`Jobs.enqueue`); entries an
instance read and never acknowledged (it died, or Redis failed mid-way) are claimed by an instance
after `claim_idle_ms`, and since an event's id comes from its entry, collecting it again makes no
second job while the first waits. Inbound entries are deleted once collected (nothing else reads
them); audit entries stay (they are the audit).

The group on the audit streams starts at the end of each stream when it is first created: events
from before webhooks were configured are not sent.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import redis

from smsbot import log
from smsbot.config import WebhookEndpoint
from smsbot.keys import WEBHOOKS_GROUP, Keys
from smsbot.webhooks import events as ev
from smsbot.webhooks.jobs import Jobs

_log = log.get("smsbot.webhooks")

Entry = tuple[str, str, dict[str, str]]  # (stream, entry id, fields)


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class Collector:
    def __init__(self, client: Any, keys: Keys, jobs: Jobs, endpoints: Sequence[WebhookEndpoint], consumer: str,
                 stop: threading.Event, *, cluster: bool = False,
                 ticket: Callable[[str], dict[str, Any] | None] = lambda _id: None,
                 on_collected: Callable[[str, int], None] = lambda _type, _n: None,
                 wake: Callable[[str], None] = lambda _ep: None,
                 claim_idle_ms: int = 10_000, claim_every_s: float = 3.0, count: int = 200, block_ms: int = 500,
                 clock: Callable[[], float] = time.time):
        self.client = client
        self.keys = keys
        self.jobs = jobs
        self.endpoints = list(endpoints)
        self.consumer = consumer
        self.stop = stop
        self.cluster = cluster
        self.ticket = ticket
        self.on_collected = on_collected
        self.wake = wake
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self.count = count
        self.block_ms = block_ms
        self.clock = clock
        self.inbound = keys.webhook_inbound()
        self.tags = {keys.audit(n): ev.audit_tag(n) for n in range(keys.shards)}
        self.streams = [*self.tags, self.inbound]
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def ensure_groups(self) -> None:
        """The group on every source; on an audit stream from its end (only new changes are events)."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, WEBHOOKS_GROUP, id="0" if stream == self.inbound else "$", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # -- one pass -------------------------------------------------------------------------------
    def translate(self, stream: str, entry_id: str, fields: dict[str, str]) -> ev.Event | None:
        if stream == self.inbound:
            return ev.from_inbound(entry_id, fields, self._mt_records)
        return ev.from_audit(self.tags[stream], entry_id, fields, self.ticket)

    def _mt_records(self, message_id: str) -> list[dict[str, Any]]:
        import json

        out = []
        for raw in self.client.lrange(self.keys.mt(message_id), 0, -1):
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
        return out

    def apply(self, entries: list[Entry]) -> int:
        """Store the jobs of these entries' events, then acknowledge the entries; returns the events."""
        found: list[ev.Event] = []
        for stream, entry_id, fields in entries:
            try:
                event = self.translate(stream, entry_id, fields)
            except Exception as e:  # an unreadable entry must not block the stream: logged, acknowledged
                _log.warning("webhook_entry_unreadable", stream=stream, entry=entry_id, error=repr(e))
                continue
            if event is not None:
                found.append(event)
        now_ms = int(self.clock() * 1000)
        for endpoint in self.endpoints:
            wanted = [(e.id, e.body()) for e in found if endpoint.wants(e.type)]
            if wanted:
                self.jobs.enqueue(endpoint.name, wanted, now_ms)
                self.wake(endpoint.name)
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _f in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, WEBHOOKS_GROUP, *ids)
            if stream == self.inbound:
                pipe.xdel(stream, *ids)
        pipe.execute()
        counted: dict[str, int] = {}
        for e in found:
            counted[e.type] = counted.get(e.type, 0) + 1
        for kind, n in counted.items():
            self.on_collected(kind, n)
        return len(found)

    def read(self) -> list[Entry]:
        """New entries of every source (waits up to block_ms when there are none)."""
        if not self.cluster:  # one blocking read over every source
            return self._read({s: ">" for s in self.streams}, self.block_ms)
        out: list[Entry] = []  # a cluster: the sources live in different slots, read one by one
        for s in self.streams:
            out += self._read({s: ">"}, None)
        if not out:
            self.stop.wait(self.block_ms / 1000)
        return out

    def _read(self, streams: dict[str, str], block_ms: int | None) -> list[Entry]:
        try:
            res = self.client.xreadgroup(WEBHOOKS_GROUP, self.consumer, streams, count=self.count, block=block_ms)
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self.ensure_groups()  # a source was deleted (FLUSHDB, a test): recreate the groups
            return []
        out: list[Entry] = []
        for stream, entries in res or []:
            for entry_id, fields in entries:
                if fields is not None:
                    out.append((_s(stream), _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
        return out

    def claim(self) -> list[Entry]:
        """Entries some instance read and left unacknowledged for `claim_idle_ms` (it died)."""
        out: list[Entry] = []
        for s in self.streams:
            try:
                res = self.client.xautoclaim(s, WEBHOOKS_GROUP, self.consumer, self.claim_idle_ms, start_id="0-0", count=self.count)
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):
                    continue
                raise
            out += [(s, _s(i), {_s(k): _s(v) for k, v in f.items()}) for i, f in res[1] if f is not None]
        return out

    # -- the thread -----------------------------------------------------------------------------
    def start(self) -> "Collector":
        self._thread = threading.Thread(target=self.run, name="webhooks-collector", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        failing = log.Throttled(_log, "webhook_collect_failed", 60.0, level="warning")
        next_claim = 0.0
        while not self.stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + self.claim_every_s
                    stale = self.claim()
                    if stale:
                        self.apply(stale)
                entries = self.read()
                if entries:
                    self.apply(entries)
                failing.recovered()
            except Exception as e:  # Redis down or a bug: keep the thread, try again shortly
                failing.hit(error=repr(e))
                self.stop.wait(1.0)
