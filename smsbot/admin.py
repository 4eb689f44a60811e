"""Operator and tester actions on subscriptions (the `smsbot subs` commands).

They go through the same Lua script as MOs, so every change is atomic and lands in the audit
stream exactly like a change made by SMS. Numbers are taken in any form a person writes them
(``+86 138-0013-8000``, ``8613800138000``): each is turned into the subscriber's one key first
(`smsbot.msisdn`, ``subscribers.country_code``), and ValueError says when it is not a number.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from smsbot.config import Settings
from smsbot.connections import open_store
from smsbot.msisdn import normalize_msisdn
from smsbot.records import LIVE_STATES
from smsbot.store import Store


@dataclass(frozen=True)
class SubscriptionRow:
    code: str
    state: str
    since_ms: int
    name: str
    price_fen: int


def _store(settings: Settings) -> Store:
    return open_store(settings)


def _actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


def key_of(settings: Settings, msisdn: str) -> str:
    """The subscriber key of a number in any written form; ValueError when it is not one."""
    return normalize_msisdn(msisdn, settings.subscribers.country_code)


def subscribe(settings: Settings, msisdn: str, code: str, store: Store | None = None, at_ms: int | None = None) -> str:
    """Subscribe `msisdn` to `code` now (or at `at_ms`): 'added', or 'exists' when it is live."""
    msisdn = key_of(settings, msisdn)
    st = store or _store(settings)
    try:
        return st.run_one(st.mo_call("subscriptions.admin_subscribe", msisdn, "-", correlation=_actor(), now_ms=at_ms,
                                     args={"service": code, "via": "admin"})).outcome
    finally:
        if store is None:
            st.close()


def unsubscribe(settings: Settings, msisdn: str, code: str, store: Store | None = None, actor: str | None = None) -> str:
    """Cancel `code` for `msisdn` ('removed', or 'absent' when not live); audited with `actor`
    (default ``cli:$USER``; the HTTP API passes ``api:<token name>``)."""
    msisdn = key_of(settings, msisdn)
    st = store or _store(settings)
    try:
        return st.run_one(st.mo_call("subscriptions.admin_unsubscribe", msisdn, "-", correlation=actor or _actor(), args={"service": code})).outcome
    finally:
        if store is None:
            st.close()


def list_subscriptions(settings: Settings, msisdn: str, include_cancelled: bool = False, store: Store | None = None) -> list[SubscriptionRow]:
    msisdn = key_of(settings, msisdn)
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
        if not include_cancelled and rec.get("state") not in LIVE_STATES:
            continue
        svc = settings.service(code)
        rows.append(SubscriptionRow(code, rec.get("state", "?"), int(rec.get("since", 0)), svc.name if svc else code, svc.price_fen if svc else 0))
    rows.sort(key=lambda r: (r.since_ms, r.code))
    return rows


NOTICE_TEMPLATE = "notice"  # core template "{text}": a notice's free text as it is


def queue_notice(settings: Settings, store: Store, msisdn: str, short_code: str, lang: str, tpl: str,
                 data: dict, correlation: str) -> str:
    """Queue one MT intent for any sender (the queue stream of the subscriber's shard, consumer group
    ``senders``), exactly as a Lua step's reply() outside an MO does: same window, TPS and retries
    as reminders. Returns the entry id. `msisdn` must already be the subscriber key."""
    import time as _time

    fields = notice_fields(msisdn, short_code, lang, tpl, data, correlation, int(_time.time() * 1000))
    eid = store.redis.xadd(store.keys.subscriber(msisdn).queue, fields)
    return eid.decode() if isinstance(eid, bytes) else str(eid)


def notice_fields(msisdn: str, short_code: str, lang: str, tpl: str, data: dict, correlation: str, now_ms: int) -> dict[str, str]:
    """The queue entry of one notice (what `queue_notice` and the HTTP API's notice step write)."""
    return {"to": msisdn, "from": short_code, "lang": lang, "tpl": tpl,
            "data": json.dumps(data, ensure_ascii=False, separators=(",", ":")), "mo": correlation, "t": str(now_ms)}


def seed(settings: Settings, first: str, count: int, codes: list[str], batch: int = 1000) -> int:
    """Subscribe `count` consecutive numbers from `first` to `codes`, in pipelined batches."""
    first = key_of(settings, first)
    st = _store(settings)
    try:
        st.load_scripts()
        base, width = int(first), len(first)
        done = 0
        calls = []
        for i in range(count):
            number = str(base + i).zfill(width)
            for code in codes:
                calls.append(st.mo_call("subscriptions.admin_subscribe", number, "-", correlation="seed", args={"service": code, "via": "seed"}))
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
