"""Operator and tester actions on subscriptions (the `smsbot subs` commands).

They go through the same Lua script as MOs, so every change is atomic and lands in the audit
stream exactly like a change made by SMS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from smsbot.config import Settings
from smsbot.store import Store


@dataclass(frozen=True)
class SubscriptionRow:
    code: str
    state: str
    since_ms: int
    name: str
    price_fen: int


def _store(settings: Settings) -> Store:
    from smsbot.app import build_store

    return build_store(settings)


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


def subscribe(settings: Settings, msisdn: str, code: str, store: Store | None = None) -> str:
    st = store or _store(settings)
    try:
        return st.run_one(st.mo_call("admin_subscribe", msisdn, "-", correlation=_actor(), args={"service": code, "via": "admin"})).outcome
    finally:
        if store is None:
            st.close()


def unsubscribe(settings: Settings, msisdn: str, code: str, store: Store | None = None) -> str:
    st = store or _store(settings)
    try:
        return st.run_one(st.mo_call("admin_unsubscribe", msisdn, "-", correlation=_actor(), args={"service": code})).outcome
    finally:
        if store is None:
            st.close()


def list_subscriptions(settings: Settings, msisdn: str, include_cancelled: bool = False, store: Store | None = None) -> list[SubscriptionRow]:
    st = store or _store(settings)
    try:
        raw = st.redis.hgetall(st.keys.subs(msisdn))
    finally:
        if store is None:
            st.close()
    rows = []
    for k, v in raw.items():
        code = k.decode()
        rec = json.loads(v)
        if not include_cancelled and rec.get("state") not in ("active", "pending"):
            continue
        svc = settings.service(code)
        rows.append(SubscriptionRow(code, rec.get("state", "?"), int(rec.get("since", 0)), svc.name if svc else code, svc.price_fen if svc else 0))
    rows.sort(key=lambda r: (r.since_ms, r.code))
    return rows


def seed(settings: Settings, first: str, count: int, codes: list[str], batch: int = 1000) -> int:
    """Subscribe `count` consecutive numbers from `first` to `codes`, in pipelined batches."""
    st = _store(settings)
    try:
        st.load_scripts()
        base, width = int(first), len(first)
        done = 0
        calls = []
        for i in range(count):
            number = str(base + i).zfill(width)
            for code in codes:
                calls.append(st.mo_call("admin_subscribe", number, "-", correlation="seed", args={"service": code, "via": "seed"}))
            if len(calls) >= batch:
                done += _run(st, calls)
                calls = []
        if calls:
            done += _run(st, calls)
        return done
    finally:
        st.close()


def _run(st: Store, calls: list) -> int:
    results = st.run_batch(calls)
    for r in results:
        if isinstance(r, Exception):
            raise r
    return sum(1 for r in results if r.outcome == "added")
