"""Billing: the run that charges monthly subscriptions, the ledger, and its verification.

* **Rules** (``smsbot/lua/billing_rules.lua``): THE definition of what is charged and when, as
  pure Lua functions. The billing steps (``smsbot/lua/billing.lua``: ``billing.charge_period``,
  ``billing.charge_use``) and the orders command (is a cancel free?) run them inside their atomic
  step; `verify` evaluates the very same functions in Redis (`Rules`), so the check and the steps
  cannot drift apart. `lua_fragment` is what the command registry hands to the store.
* **Run** (`run`, `BillingRun`): every subscriber with a subscription hash (SCAN) gets one
  ``billing.charge_period`` step for the period (calendar month in ``billing.timezone``) that
  holds the run's time; the steps go out in pipelined batches of ``billing.batch``. A charge is the
  ledger field ``<code>:<YYYY-MM>`` written with HSETNX in the same atomic step as its audit
  entry, so overlapping runs, a run killed halfway and restarted, or a run repeated, can never
  charge a subscription twice for one period. Every run is recorded (``<prefix>:billing:runs``).
* **Runs survive being killed.** A run holds a lease (``<prefix>:billing:runs:lease:<run id>``,
  a key with a TTL of ``lease_s``, renewed by a thread while the run works) and checkpoints its
  progress after every batch (subscribers are billed in MSISDN order; the record keeps the last
  one done and the counts so far). A later run for the same period that finds an unfinished run
  whose lease is gone (killed with kill -9, the host died, or interrupted) **resumes** it: same
  run id, same time, from the checkpoint; the batch in flight when it died is billed again, which
  is harmless (HSETNX) and shows up as ``already_charged``. A run whose lease is alive is another
  process at work: a new run overlaps it (safe). A run that completes **supersedes** the unfinished
  runs of its period it covers (same or earlier time, started no later). States (`list_runs`):
  ``running`` (lease alive), ``abandoned`` (unfinished, lease expired: resumable), ``interrupted``
  (stopped on purpose or by a Redis failure: resumable at once), ``finished``, ``superseded``.
* **Ledger** (`ledger`): a subscriber's charges, ``<prefix>:{N}:ledger:<msisdn>``.
* **Verify** (`verify`): replays the audit streams into the subscriptions' history (order, due
  time, cancellation) and checks the ledger against it and against the charge entries in the
  audit streams: every charge justified by the rules (``billing_rules.lua``), none for a
  subscription cancelled before its first charge, one audit entry per charge and vice versa, the
  catalogue price, and no charge missing for a finished run or an applied use event.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import redis

from smsbot.config import BillingKind, Settings
from smsbot.keys import USE_EVENTS_GROUP
from smsbot.msisdn import normalize_msisdn
from smsbot.periods import Period, parse_time, period_by_label, period_of, zone
from smsbot.steps import LUA_DIR
from smsbot.store import ScriptResult, Store

LIVE = ("active", "pending")
RULES_LUA = LUA_DIR / "billing_rules.lua"  # the rules (pure functions): steps, orders and verify use them
STEPS_LUA = LUA_DIR / "billing.lua"  # the billing steps (handlers billing.charge_period, billing.charge_use)
CHARGE_PERIOD = "billing.charge_period"
CHARGE_USE = "billing.charge_use"


def lua_fragment() -> str:
    """The billing steps with the rules before them: one fragment for the store (via the registry)."""
    return RULES_LUA.read_text(encoding="utf-8") + "\n" + STEPS_LUA.read_text(encoding="utf-8")


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _after(key: str, marker: str) -> str:
    return key.split(marker, 1)[1]


# -- run ----------------------------------------------------------------------------------------------
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


LEASE_SECONDS = 30.0

# Renew a lease held by this token (or take it back if it expired and nobody took it): 1, else 0.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(Exception):
    """Another process took this run over (its lease expired while this one was stalled)."""


def lease_key(store: Store, run_id: str) -> str:
    return f"{store.keys.billing_runs()}:lease:{run_id}"


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
        return lease_key(self.store, self.run_id)

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

    def resume(self, rec: "RunRecord") -> bool:
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
        ok = bool(self.store.redis.eval(_RENEW, 1, self.lease_key, self.token, self.lease_ms))
        if not ok:
            self.lease_lost.set()
        return ok

    def release(self) -> None:
        try:
            self.store.redis.eval(_RELEASE, 1, self.lease_key, self.token)
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


# -- the runs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One entry of ``<prefix>:billing:runs``, with its state (see the module doc)."""

    id: str
    period: str
    at: int
    started: int
    finished: int | None
    state: str  # running | abandoned | interrupted | finished | superseded
    lease_alive: bool
    cursor: str | None
    total: int
    resumed: int
    raw: dict[str, Any]

    @property
    def resumable(self) -> bool:
        return self.state in ("abandoned", "interrupted")


def _to_record(run_id: str, rec: dict[str, Any], lease_alive: bool) -> RunRecord:
    finished = rec.get("finished") or None
    stored = rec.get("state")
    if finished:
        state = "finished"
    elif stored == "superseded":
        state = "superseded"
    elif lease_alive:
        state = "running"
    elif stored == "interrupted":
        state = "interrupted"
    else:
        state = "abandoned"  # running with no lease: killed; or a record from before leases existed
    return RunRecord(run_id, str(rec.get("period", "")), int(rec.get("at") or 0), int(rec.get("started") or 0),
                     int(finished) if finished else None, state, lease_alive, rec.get("cursor"),
                     int(rec.get("total") or 0), int(rec.get("resumed") or 0), rec)


def _load_run(store: Store, run_id: str) -> RunRecord | None:
    raw = store.redis.hget(store.keys.billing_runs(), run_id)
    if raw is None:
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return _to_record(run_id, rec, bool(store.redis.exists(lease_key(store, run_id))))


def list_runs(store: Store) -> list[RunRecord]:
    """Every recorded run with its state, oldest start first."""
    raw = _runs(store)
    if not raw:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for r in raw:
        pipe.exists(lease_key(store, r["id"]))
    alive = pipe.execute()
    out = [_to_record(r["id"], r, bool(a)) for r, a in zip(raw, alive)]
    out.sort(key=lambda r: (r.started, r.id))
    return out


# -- use events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Use:
    """One use of an on-demand service (stream ``<prefix>:events:uses``; see the README)."""

    use_id: str
    msisdn: str
    service: str
    at_ms: int


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def event_common(settings: Settings, entry_id: str, f: dict[str, str]) -> tuple[str, str, int]:
    """(msisdn, service code, time) of an order or use event; ValueError names what is wrong.
    ``at`` defaults to the entry id's time."""
    msisdn = normalize_msisdn(f.get("msisdn", ""), settings.subscribers.country_code)
    code = f.get("service", "").strip().upper()
    if settings.service(code) is None:
        raise ValueError(f"unknown service code {code!r}")
    at = f.get("at")
    at_ms = parse_time(at, zone(settings.billing.timezone)) if at else _entry_ms(entry_id)
    return msisdn, code, at_ms


def parse_use(settings: Settings, entry_id: str, f: dict[str, str]) -> Use:
    """Stream entry -> Use; ValueError names what is wrong. ``use_id`` defaults to the entry id."""
    msisdn, code, at_ms = event_common(settings, entry_id, f)
    svc = settings.service(code)
    assert svc is not None
    if svc.kind is not BillingKind.ON_DEMAND:
        raise ValueError(f"service {code} is not on-demand")
    use_id = (f.get("use_id") or entry_id).strip()
    if not use_id or len(use_id) > 128:
        raise ValueError("use_id must be 1 to 128 characters")
    return Use(use_id, msisdn, code, at_ms)


def use_call(settings: Settings, store: Store, use: Use, correlation: str) -> Any:
    """The ``billing.charge_use`` step for one use (the orders command's use consumer runs it)."""
    svc = settings.service(use.service)
    assert svc is not None
    return store.mo_call(
        CHARGE_USE, use.msisdn, "-", correlation=correlation, now_ms=use.at_ms,
        args={"use_id": use.use_id, "service": use.service, "kind": svc.kind.value, "fen": svc.price_fen},
        extra_keys=("ledger",),
    )


# -- ledger --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Charge:
    msisdn: str
    field: str
    code: str
    period: str | None  # monthly charges
    use: str | None  # on-demand charges
    fen: int
    at_ms: int
    run: str
    raw: str


def _parse_charge(msisdn: str, fld: str, raw: str) -> Charge:
    code, _, rest = fld.partition(":")
    period, use = (None, rest[4:]) if rest.startswith("use:") else (rest, None)
    rec = json.loads(raw)
    return Charge(msisdn, fld, code, period, use, int(rec["fen"]), int(rec["at"]), str(rec.get("run", "")), raw)


def ledger(store: Store, msisdn: str) -> list[Charge]:
    raw = store.redis.hgetall(store.keys.ledger(msisdn))
    out = [_parse_charge(msisdn, _s(k), _s(v)) for k, v in raw.items()]
    out.sort(key=lambda c: (c.at_ms, c.field))
    return out


@dataclass(frozen=True)
class StatementLine:
    code: str
    charges: int  # monthly: periods charged (1 per period); on-demand: uses charged
    fen: int
    on_demand: bool


def statement(charges: list[Charge], period: Period) -> list[StatementLine]:
    """A month's itemized bill (CXZD): the charges made in `period` (their ledger time, as `smsbot
    billing ledger` shows it), one line per service in order of the first charge. The bill
    command's Lua step applies the same rule to the ledger hash; tests check they agree."""
    lines: dict[str, list[int]] = {}
    for c in sorted(charges, key=lambda c: (c.at_ms, c.field)):
        if period.start_ms <= c.at_ms < period.end_ms:
            e = lines.setdefault(c.code, [0, 0, 0])
            e[0] += 1
            e[1] += c.fen
            e[2] = e[2] or int(c.use is not None)
    return [StatementLine(code, n, fen, bool(u)) for code, (n, fen, u) in lines.items()]


# -- verify --------------------------------------------------------------------------------------------
@dataclass
class Incarnation:
    """One subscription from its creation (order or admin) to its cancellation, as the audit tells it."""

    start: int
    due: int
    created_ms: int  # wall-clock time it was stored (audit entry id)
    cancel: int | None = None
    order_id: str = ""

    def cancelled_before_charge(self) -> bool:
        return self.cancel is not None and self.cancel < self.due


# verify's question to the rules: a batch of cases, each answered with '' (charged) or the reason not
_RULES_DRIVER = """
local out = {}
for i, c in ipairs(cjson.decode(ARGV[1])) do
  local why
  if c[1] == 'm' then
    why = BILLING.monthly_skip(c[2], c[3], c[4], c[5], c[6])
  else
    why = BILLING.use_skip(c[2], c[3], c[4], c[5])
  end
  out[i] = why or ''
end
return out
"""


class Rules:
    """The billing rules for `verify`, evaluated by the same Lua functions the billing steps run
    (``billing_rules.lua``, one EVAL per batch of cases; the script reads no key).

    Two passes: while `recording`, every question is remembered and answered False; `evaluate`
    then asks Redis all of them at once, and the second pass gets the real answers."""

    CHUNK = 5000

    def __init__(self, store: Store):
        self.store = store
        self.recording = True
        self._cases: dict[tuple[Any, ...], str | None] = {}
        self._source = RULES_LUA.read_text(encoding="utf-8") + _RULES_DRIVER

    def _ask(self, case: tuple[Any, ...]) -> bool:
        if self.recording:
            self._cases.setdefault(case, None)
            return False
        return self._cases[case] == ""

    def monthly(self, inc: Incarnation, period: Period, at: int) -> bool:
        """Does subscription `inc` owe `period` at a run at time `at`?"""
        return self._ask(("m", inc.start, inc.due, inc.cancel if inc.cancel is not None else False, period.start_ms, at))

    def use(self, inc: Incarnation, at: int) -> bool:
        """Is a use at `at` of subscription `inc` charged?"""
        return self._ask(("u", inc.start, inc.due, inc.cancel if inc.cancel is not None else False, at))

    def evaluate(self) -> None:
        cases = list(self._cases)
        for i in range(0, len(cases), self.CHUNK):
            chunk = cases[i : i + self.CHUNK]
            answers = self.store.redis.eval(self._source, 0, json.dumps(chunk))
            for case, why in zip(chunk, answers):
                self._cases[case] = _s(why)
        self.recording = False


@dataclass
class Report:
    discrepancies: list[str] = field(default_factory=list)
    charges: int = 0
    subscriptions: int = 0
    runs: int = 0
    uses: int = 0

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def _xrange_all(client: redis.Redis, stream: str, chunk: int = 5000) -> Iterator[tuple[str, dict[str, str]]]:
    start = "-"
    while True:
        entries = client.xrange(stream, min=start, max="+", count=chunk)
        for entry_id, fields in entries:
            yield _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}
        if len(entries) < chunk:
            return
        last = _s(entries[-1][0])
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"


def history(store: Store) -> tuple[dict[tuple[str, str], list[Incarnation]], dict[tuple[str, str], list[dict[str, str]]]]:
    """Audit streams -> ({(msisdn, code): incarnations}, {(msisdn, ledger field): charge audit entries}).
    Entries that are not about a subscription (complaint tickets: field ``ticket``) are skipped."""
    subs: dict[tuple[str, str], list[Incarnation]] = defaultdict(list)
    charges: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for stream in store.keys.all_audits():
        for entry_id, f in _xrange_all(store.redis, stream):
            if "ticket" in f:
                continue
            m, code = f.get("msisdn", ""), f.get("service", "")
            old, new, reason = f.get("old", ""), f.get("new", ""), f.get("reason", "")
            try:
                at = int(f.get("at", "0"))
            except ValueError:
                continue
            if reason == "charge":
                charges[(m, f.get("ledger", ""))].append(f)
                continue
            lst = subs[(m, code)]
            if new in LIVE and old not in LIVE:
                due = int(f["due"]) if f.get("due", "").isdigit() else at
                lst.append(Incarnation(at, due, int(entry_id.split("-")[0]), order_id=f.get("order_id", "")))
            elif new == "cancelled" and old in LIVE and lst and lst[-1].cancel is None:
                lst[-1].cancel = at
    return subs, charges


def _runs(store: Store) -> list[dict[str, Any]]:
    out = []
    for k, v in store.redis.hgetall(store.keys.billing_runs()).items():
        try:
            rec = json.loads(v)
        except ValueError:
            continue
        rec["id"] = _s(k)
        out.append(rec)
    return out


def _applied_uses(store: Store) -> list[tuple[str, dict[str, str]]]:
    """Use events the consumer group has delivered and acknowledged."""
    stream = store.keys.use_events()
    try:
        groups = store.redis.xinfo_groups(stream)
    except redis.ResponseError:
        return []
    last = None
    for g in groups:
        if _s(g.get("name") or g.get(b"name")) == USE_EVENTS_GROUP:
            last = _s(g.get("last-delivered-id") or g.get(b"last-delivered-id"))
    if last is None:
        return []
    pending = {_s(p["message_id"]) for p in store.redis.xpending_range(stream, USE_EVENTS_GROUP, "-", "+", 1_000_000)}

    def key(i: str) -> tuple[int, int]:
        a, b = i.split("-")
        return int(a), int(b)

    return [(i, f) for i, f in _xrange_all(store.redis, stream) if key(i) <= key(last) and i not in pending]


@dataclass
class _Evidence:
    """What verify reads once: the audit history, the ledger, the finished runs, the applied uses."""

    subs: dict[tuple[str, str], list[Incarnation]]
    audit_charges: dict[tuple[str, str], list[dict[str, str]]]
    ledger: dict[tuple[str, str], Charge]
    unreadable: list[str]
    runs: list[dict[str, Any]]
    uses: list[tuple[str, dict[str, str]]]


def verify(settings: Settings, store: Store) -> Report:
    subs, audit_charges = history(store)
    led: dict[tuple[str, str], Charge] = {}
    unreadable: list[str] = []
    for key in store.redis.scan_iter(match=store.keys.ledger_pattern(), count=1000):
        m = _after(_s(key), ":ledger:")
        for k, v in store.redis.hgetall(key).items():
            fld = _s(k)
            try:
                led[(m, fld)] = _parse_charge(m, fld, _s(v))
            except (ValueError, KeyError, TypeError) as e:
                unreadable.append(f"{m} {fld}: unreadable ledger entry ({e!r})")
    ev = _Evidence(subs, audit_charges, led, unreadable, [r for r in _runs(store) if r.get("finished")], _applied_uses(store))
    rules = Rules(store)
    _verify(settings, ev, rules)  # records every question the checks ask the rules
    rules.evaluate()
    return _verify(settings, ev, rules)


def _verify(settings: Settings, ev: _Evidence, rules: Rules) -> Report:
    tz = zone(settings.billing.timezone)
    rep = Report()
    subs, led = ev.subs, ev.ledger
    rep.subscriptions = sum(len(v) for v in subs.values())
    rep.discrepancies.extend(ev.unreadable)
    rep.charges = len(led)
    bad = rep.discrepancies

    for (m, fld), c in sorted(led.items()):
        where = f"{m} {fld}"
        audits = ev.audit_charges.get((m, fld), [])
        if not audits:
            bad.append(f"{where}: charge in the ledger has no audit entry")
        elif len(audits) > 1:
            bad.append(f"{where}: {len(audits)} audit entries for one charge (double charge)")
        elif audits[0].get("fen") != str(c.fen):
            bad.append(f"{where}: ledger says {c.fen} fen, audit says {audits[0].get('fen')}")
        svc = settings.service(c.code)
        if svc is None:
            bad.append(f"{where}: unknown service {c.code}")
            continue
        if c.fen != svc.price_fen:
            bad.append(f"{where}: charged {c.fen} fen, catalogue price is {svc.price_fen}")
        incs = subs.get((m, c.code), [])
        if c.period is not None:
            if svc.kind is not BillingKind.MONTHLY:
                bad.append(f"{where}: period charge for a {svc.kind.value} service")
                continue
            try:
                p = period_by_label(c.period, tz)
            except ValueError:
                bad.append(f"{where}: bad period {c.period!r}")
                continue
            if not (p.start_ms <= c.at_ms < p.end_ms):
                bad.append(f"{where}: charged at {c.at_ms}, outside period {c.period}")
            if not any([rules.monthly(i, p, c.at_ms) for i in incs]):
                started = [i for i in incs if i.start <= c.at_ms]
                if started and all(i.cancelled_before_charge() for i in started):
                    bad.append(f"{where}: charged although cancelled before the first charge")
                else:
                    bad.append(f"{where}: charged but no subscription was due and live for {c.period}")
        else:
            if svc.kind is not BillingKind.ON_DEMAND:
                bad.append(f"{where}: use charge for a {svc.kind.value} service")
                continue
            if not any([rules.use(i, c.at_ms) for i in incs]):
                bad.append(f"{where}: use charged but the subscription was not live and past its grace then")
    for (m, fld), _entries in sorted(ev.audit_charges.items()):
        if (m, fld) not in led:
            bad.append(f"{m} {fld}: charge in the audit stream is missing from the ledger")

    # no missed charge: every finished run, every subscription stored before it began and due then
    monthly = {s.code for s in settings.services if s.kind is BillingKind.MONTHLY}
    rep.runs = len(ev.runs)
    expected: set[tuple[str, str]] = set()
    for r in ev.runs:
        p = period_by_label(str(r["period"]), tz)
        at, started = int(r["at"]), int(r["started"])
        for (m, code), incs in subs.items():
            if code in monthly and any([i.created_ms < started and rules.monthly(i, p, at) for i in incs]):
                expected.add((m, f"{code}:{p.label}"))
    for m, fld in sorted(expected - set(led)):
        bad.append(f"{m} {fld}: missed charge (due at a finished billing run)")

    for entry_id, f in ev.uses:
        try:
            use = parse_use(settings, entry_id, f)
        except ValueError:
            continue
        rep.uses += 1
        fld = f"{use.service}:use:{use.use_id}"
        if (use.msisdn, fld) not in led and any([rules.use(i, use.at_ms) for i in subs.get((use.msisdn, use.service), [])]):
            bad.append(f"{use.msisdn} {fld}: missed charge for an applied use event")
    return rep
