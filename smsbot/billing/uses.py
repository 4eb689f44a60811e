"""On-demand use events (stream ``<prefix>:events:uses``): what one holds, how it is read, and
the ``billing.charge_use`` step that charges it (the orders command's use consumer runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smsbot.billing.rules import CHARGE_USE
from smsbot.config import BillingKind, Settings
from smsbot.msisdn import normalize_msisdn
from smsbot.periods import parse_time, zone
from smsbot.store import Store


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
