"""Verify the ledger: replay the audit streams into every subscription's history (order, due
time, cancellation) and check each charge against the rules (`smsbot.billing.rules`), against its
audit entry and the catalogue price; and that no charge is missing for a finished run or an
applied use event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import redis

from smsbot.billing.ledger import Charge, _parse_charge
from smsbot.billing.rules import LIVE, Incarnation, Rules
from smsbot.billing.runs import _runs
from smsbot.billing.uses import parse_use
from smsbot.config import BillingKind, Settings
from smsbot.keys import USE_EVENTS_GROUP
from smsbot.periods import period_by_label, zone
from smsbot.store import Store, _s


def _after(key: str, marker: str) -> str:
    return key.split(marker, 1)[1]


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
