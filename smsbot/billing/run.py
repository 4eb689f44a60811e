"""A billing run: every subscriber's ``billing.charge_period`` step for the period holding the
run's time, in pipelined batches, under a lease, checkpointed after every batch; resumed when it
was killed; recorded (`smsbot.billing.runs`)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import redis

from smsbot.billing.rules import CHARGE_PERIOD
from smsbot.billing.runs import RunRecord, _load_run, list_runs
from smsbot.config import Settings
from smsbot.periods import Period, period_of, zone
from smsbot.steps import LEASE_RELEASE, LEASE_RENEW, LeaseKeys, LeaseReleaseArgv, LeaseRenewArgv
from smsbot.store import ScriptResult, Store, _s

LEASE_SECONDS = 30.0


def _after(key: str, marker: str) -> str:
    return key.split(marker, 1)[1]


@dataclass
class Summary:
    run_id: str
    period: str
    at_ms: int
    subscribers: int = 0
    subscriptions: int = 0
    charged: int = 0
    amount_fen: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    finished: bool = False
    resumed_from: int | None = None  # a resumed run: subscribers its earlier attempt(s) had billed
    superseded: list[str] = field(default_factory=list)  # unfinished runs of the period this one covered

    def lines(self) -> list[str]:
        out = []
        if self.resumed_from is not None:
            out.append(f"resumed billing run {self.run_id}: {self.resumed_from} subscribers were billed before it stopped")
        out += [
            f"billing run {self.run_id} for {self.period}: {self.subscribers} subscribers, {self.subscriptions} subscriptions seen",
            f"charged: {self.charged} ({self.amount_fen / 100:.2f} yuan)",
            f"skipped: {sum(self.skipped.values())}" + (
                " (" + ", ".join(f"{why}: {n}" for why, n in sorted(self.skipped.items())) + ")" if self.skipped else ""),
        ]
        if self.errors:
            out.append(f"errors: {self.errors} subscriber(s) failed; run again to finish them (charges are never doubled)")
        if self.superseded:
            out.append(f"completes the unfinished run(s) {', '.join(self.superseded)}")
        return out


class LeaseLost(Exception):
    """Another process took this run over (its lease expired while this one was stalled)."""


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class BillingRun:
    """One billing run at time `at_ms`. `begin` (or `resume`), then `bill` batches of subscribers
    (`checkpoint` after each), then `finish`."""

    def __init__(self, settings: Settings, store: Store, at_ms: int, run_id: str | None = None, *, lease_s: float = LEASE_SECONDS):
        self.settings = settings
        self.store = store
        self.at_ms = at_ms
        self.period: Period = period_of(at_ms, zone(settings.billing.timezone))
        self.run_id = run_id or f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"
        self.summary = Summary(self.run_id, self.period.label, at_ms)
        self._args = {
            "period": self.period.label,
            "start": self.period.start_ms,
            "kinds": {s.code: s.kind.value for s in settings.services},
            "prices": {s.code: s.price_fen for s in settings.services},
        }
        self._started_ms = 0
        self.lease_ms = max(1000, int(lease_s * 1000))
        self.token = f"{_owner()}:{os.urandom(4).hex()}"
        self.cursor: str | None = None  # the last subscriber billed (in MSISDN order)
        self.total = 0
        self.resumed = 0  # how many times this run was resumed
        self.lease_lost = threading.Event()

    @property
    def lease_key(self) -> str:
        return self.store.keys.billing_run_lease(self.run_id)

    def _record(self, **extra: Any) -> None:
        sm = self.summary
        rec = {
            "period": self.period.label, "at": self.at_ms, "started": self._started_ms, "owner": _owner(),
            "cursor": self.cursor, "total": self.total, "resumed": self.resumed, "updated": int(time.time() * 1000),
            "subscribers": sm.subscribers, "subscriptions": sm.subscriptions, "charged": sm.charged,
            "amount_fen": sm.amount_fen, "errors": sm.errors, "skipped": dict(sm.skipped), **extra,
        }
        self.store.redis.hset(self.store.keys.billing_runs(), self.run_id, json.dumps(rec))

    def begin(self) -> None:
        self._started_ms = int(time.time() * 1000)
        self.store.redis.set(self.lease_key, self.token, px=self.lease_ms)
        self._record(state="running", finished=None)

    def resume(self, rec: RunRecord) -> bool:
        """Take over the unfinished run `rec` (its lease gone): same id, time and start, from its
        checkpoint. False when another process got it first (or it finished meanwhile)."""
        self.run_id = rec.id
        if not self.store.redis.set(self.lease_key, self.token, px=self.lease_ms, nx=True):
            return False
        fresh = _load_run(self.store, rec.id)
        if fresh is None or fresh.finished or fresh.state == "superseded":
            self.release()
            return False
        self.at_ms = fresh.at
        self.period = period_of(fresh.at, zone(self.settings.billing.timezone))
        self._args["period"], self._args["start"] = self.period.label, self.period.start_ms
        self._started_ms = fresh.started
        self.cursor = fresh.cursor
        self.total = fresh.total
        self.resumed = fresh.resumed + 1
        raw = fresh.raw
        sm = Summary(self.run_id, self.period.label, self.at_ms)
        sm.subscribers = int(raw.get("subscribers") or 0)
        sm.subscriptions = int(raw.get("subscriptions") or 0)
        sm.charged = int(raw.get("charged") or 0)
        sm.amount_fen = int(raw.get("amount_fen") or 0)
        sm.skipped = Counter({str(k): int(v) for k, v in (raw.get("skipped") or {}).items()})
        sm.resumed_from = sm.subscribers
        self.summary = sm
        self._record(state="running", finished=None)
        return True

    def renew(self) -> bool:
        """Extend the lease; False (and `lease_lost` set) when another process holds it now."""
        ok = bool(self.store.run_step(LEASE_RENEW, LeaseKeys(lease=self.lease_key),
                                      LeaseRenewArgv(token=self.token, ttl_ms=self.lease_ms)))
        if not ok:
            self.lease_lost.set()
        return ok

    def release(self) -> None:
        try:
            self.store.run_step(LEASE_RELEASE, LeaseKeys(lease=self.lease_key), LeaseReleaseArgv(token=self.token))
        except redis.RedisError:
            pass  # it expires by itself

    def subscribers(self) -> list[str]:
        """Every MSISDN with a subscription hash (SCAN; order is sorted for stable progress)."""
        found: set[str] = set()
        for key in self.store.redis.scan_iter(match=self.store.keys.subs_pattern(), count=1000):
            found.add(_after(_s(key), ":subs:"))
        return sorted(found)

    def remaining(self, subs: list[str]) -> list[str]:
        """The subscribers after the checkpoint (all of them for a new run)."""
        if self.cursor is None:
            return subs
        return [m for m in subs if m > self.cursor]

    def bill(self, msisdns: list[str]) -> None:
        """One pipelined round trip: the ``bill`` step for each subscriber."""
        if not msisdns:
            return
        calls = [
            self.store.mo_call(CHARGE_PERIOD, m, "-", correlation=self.run_id, now_ms=self.at_ms, args=self._args, extra_keys=("ledger",))
            for m in msisdns
        ]
        results = self.store.run_batch(calls)
        sm = self.summary
        for res in results:
            sm.subscribers += 1
            if isinstance(res, Exception) or not isinstance(res, ScriptResult):
                sm.errors += 1
                continue
            detail = json.loads(res.extra or "{}")
            charged = detail.get("c") or []
            skipped = detail.get("s") or {}
            charged = charged if isinstance(charged, list) else []
            skipped = skipped if isinstance(skipped, dict) else {}
            sm.subscriptions += len(charged) + len(skipped)
            sm.charged += len(charged)
            sm.amount_fen += sum(self._args["prices"].get(c, 0) for c in charged)
            sm.skipped.update(skipped.values())

    def checkpoint(self, last: str) -> None:
        """After a batch: renew the lease (raise `LeaseLost` if taken over), record progress."""
        if self.lease_lost.is_set() or not self.renew():
            raise LeaseLost(f"billing run {self.run_id} was taken over by another process")
        if self.summary.errors == 0:  # with failed subscribers the run must start over to retry them
            self.cursor = last
        self._record(state="running", finished=None)

    def interrupt(self) -> None:
        """Stopped before the end (signal, Redis failure, a bug): resumable at once by the next run."""
        if self.lease_lost.is_set():
            return
        try:
            self._record(state="interrupted", finished=None)
        except redis.RedisError:
            return  # the lease expires by itself: the run is then "abandoned", just as resumable
        self.release()

    def finish(self) -> None:
        sm = self.summary
        sm.finished = sm.errors == 0
        if sm.finished:
            self.cursor = None
        self._record(
            state="finished" if sm.finished else "interrupted",
            finished=int(time.time() * 1000) if sm.finished else None,
        )
        self.release()
        if sm.finished:
            sm.superseded = self._supersede()

    def _supersede(self) -> list[str]:
        """Mark the unfinished runs of this period that this one covers (no later time, started no
        later) as superseded: nothing is left for them to charge."""
        out = []
        for rec in list_runs(self.store):
            if (rec.id != self.run_id and not rec.finished and rec.state != "superseded" and rec.period == self.period.label
                    and rec.at <= self.at_ms and rec.started <= self._started_ms):
                raw = dict(rec.raw)
                raw.update(state="superseded", superseded_by=self.run_id)
                raw.pop("id", None)
                self.store.redis.hset(self.store.keys.billing_runs(), rec.id, json.dumps(raw))
                out.append(rec.id)
        return out


class _LeaseKeeper:
    """Renews a run's lease every third of its TTL from its own thread (a long SCAN or a slow batch
    must not let it expire); stops when the run ends or the lease is lost."""

    def __init__(self, run: BillingRun):
        self.run = run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{run.run_id}", daemon=True)

    def __enter__(self) -> "_LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.run.lease_ms / 3000):
            try:
                if not self.run.renew():
                    return
            except redis.RedisError:
                continue  # Redis down: the run itself fails and says so


def run(settings: Settings, store: Store, at_ms: int, *, batch: int | None = None,
        progress: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None,
        run_id: str | None = None, resume: bool = True, lease_s: float = LEASE_SECONDS,
        should_stop: Callable[[], bool] | None = None, on_start: Callable[["BillingRun"], None] | None = None) -> Summary:
    """A whole run. `on_total(n)` is told the subscriber count, `progress(k)` each batch's size
    (for a resumed run, first the subscribers done before). With `resume` (the default) an
    unfinished run of the same period whose lease is gone, at or before `at_ms`, is resumed
    instead of starting a new one (`Summary.resumed_from`). `should_stop()` is asked between
    batches: True interrupts the run (`BillingStopped`), resumable at once. `on_start(run)` is
    called once the run is set up (begun or resumed)."""
    br = None
    if resume and run_id is None:
        br = _resume_candidate(settings, store, at_ms, lease_s)
    if br is None:
        br = BillingRun(settings, store, at_ms, run_id, lease_s=lease_s)
        br.begin()
    if on_start:
        on_start(br)
    size = batch or settings.billing.batch
    try:
        with _LeaseKeeper(br):
            subs = br.subscribers()
            todo = br.remaining(subs)
            if br.summary.resumed_from is None:
                br.total = len(subs)
            if on_total:
                on_total(br.total if br.summary.resumed_from is not None else len(subs))
            if progress and br.summary.resumed_from:
                progress(min(br.summary.resumed_from, br.total))
            for i in range(0, len(todo), size):
                if should_stop is not None and should_stop():
                    raise BillingStopped(br.summary)
                chunk = todo[i : i + size]
                try:
                    br.bill(chunk)
                except (redis.ConnectionError, redis.TimeoutError) as e:  # nothing known stored for this batch
                    br.summary.errors += len(chunk)
                    br.summary.subscribers += len(chunk)
                    br.interrupt()
                    raise BillingInterrupted(br.summary) from e
                br.checkpoint(chunk[-1])
                if progress:
                    progress(len(chunk))
            br.finish()
    except LeaseLost:
        raise
    except BaseException:
        if not br.summary.finished:
            br.interrupt()
        raise
    return br.summary


def _resume_candidate(settings: Settings, store: Store, at_ms: int, lease_s: float) -> BillingRun | None:
    """Take over the latest resumable run of at_ms's period (at or before at_ms), if any."""
    period = period_of(at_ms, zone(settings.billing.timezone)).label
    candidates = [r for r in list_runs(store) if r.resumable and r.period == period and r.at <= at_ms]
    for rec in sorted(candidates, key=lambda r: (r.at, r.started), reverse=True):
        br = BillingRun(settings, store, rec.at, rec.id, lease_s=lease_s)
        if br.resume(rec):
            return br
    return None


class BillingInterrupted(Exception):
    def __init__(self, summary: Summary):
        super().__init__("Redis became unreachable during the billing run; run it again to finish (charges are never doubled)")
        self.summary = summary


class BillingStopped(Exception):
    """`should_stop()` said so between two batches; the run is recorded as interrupted (resumable)."""

    def __init__(self, summary: Summary):
        super().__init__(f"billing run {summary.run_id} stopped after {summary.subscribers} subscribers; "
                         "`smsbot billing run` resumes it")
        self.summary = summary
