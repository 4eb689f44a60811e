"""Usage reports as values: what one holds and how it is checked (sizes, cycles, plans), the stream
entry written for one (`event_fields`: ``smsbot usage``, ``POST /v1/usage``), the ``usage.report``
step's arguments (`parse_event`), and the stored record read back (`read_record`). Shared by the
command (`commands.usage`), its CLI and its HTTP endpoints."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from smsbot.config import Settings
from smsbot.msisdn import normalize_msisdn

from commands.usage.settings import NAME, DataPlan, usage_settings
MB = 1024 * 1024
CYCLE_PAST_MONTHS = 12  # a report this far back is harmless (ignored) but likely a typo: refused unless forced
CYCLE_AHEAD_MONTHS = 1  # next month: clocks at the month's turn
MAX_BYTES = 64 * 1024 * MB * 1024  # 64 TB: exact in Lua numbers and in cjson's 14 significant digits
CYCLE_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]I?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 0, "B": 1, "K": 1024, "M": MB, "G": 1024 * MB, "T": 1024 * 1024 * MB}


# -- helpers shared with the CLI ------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``95MB``, ``95.5MB``, ``1GB``, ``1024KB``, ``123456B``, ``0`` -> bytes (binary units: 1 MB =
    1024 * 1024 bytes; ``M``/``MiB`` work too). Raises ValueError with a message for the user."""
    m = _SIZE_RE.match(text or "")
    if not m:
        raise ValueError(f"not a size: {text!r} (examples: 95MB, 95.5MB, 1GB, 1024KB, 123456B, 0)")
    number, unit = Decimal(m.group(1)), (m.group(2) or "").upper()
    factor = _UNITS[unit[:1]] if unit else 0
    if factor == 0:
        if number != 0:
            raise ValueError(f"size {text!r} needs a unit: B, KB, MB, GB or TB (1 MB = 1024*1024 bytes)")
        return 0
    if factor == 1 and number != number.to_integral_value():
        raise ValueError(f"size {text!r}: bytes must be a whole number")
    value = int((number * factor).to_integral_value(rounding=ROUND_HALF_UP))
    if value > MAX_BYTES:
        raise ValueError(f"size {text!r} is too large (at most 64TB)")
    return value


def current_cycle(settings: Settings, now: float | None = None) -> str:
    """The billing cycle id (YYYY-MM) of `now` in ``usage.timezone``."""
    t = time.time() if now is None else now
    return datetime.fromtimestamp(t, ZoneInfo(usage_settings(settings).timezone)).strftime("%Y-%m")


def _months(cycle: str) -> int:
    y, m = cycle.split("-")
    return int(y) * 12 + int(m) - 1


def check_cycle_near(cycle: str, now_cycle: str) -> None:
    """ValueError unless `cycle` (YYYY-MM) is at most `CYCLE_PAST_MONTHS` before and
    `CYCLE_AHEAD_MONTHS` after `now_cycle`: a report for a future cycle makes the stored usage
    ignore every real report until then (a mistyped year would silence the alerts for years). The
    CLI (``--force``) and the HTTP API refuse such a report; the stream itself accepts it."""
    ahead = _months(cycle) - _months(now_cycle)
    if ahead > CYCLE_AHEAD_MONTHS:
        raise ValueError(f"{cycle} is {ahead} months after this cycle ({now_cycle}): the stored usage would then ignore "
                         f"every real report until {cycle}; check the year")
    if -ahead > CYCLE_PAST_MONTHS:
        raise ValueError(f"{cycle} is {-ahead} months before this cycle ({now_cycle}): likely a typo; check the year")


def alert_short_code(settings: Settings) -> str | None:
    """The short code that sends data-usage alerts: ``usage.short_code``, else the first enabling ``usage``."""
    own = usage_settings(settings).short_code
    if own:
        return own
    for sc in settings.short_codes:
        if NAME in sc.commands:
            return sc.code
    return None


def resolve_plan(settings: Settings, code: str | None) -> DataPlan:
    """The plan `code` names (None/empty: ``usage.default_plan``); ValueError naming the known plans."""
    u = usage_settings(settings)
    name = (code or "").strip().upper() or u.default_plan
    known = ", ".join(p.code for p in u.plans) or "none configured"
    if not name:
        raise ValueError(f"no plan given and no usage.default_plan; known plans: {known}")
    plan = u.plan(name)
    if plan is None:
        raise ValueError(f"unknown plan {name!r}; known plans: {known}")
    return plan


def report_args(settings: Settings, plan: DataPlan, used: int, cycle: str, at_ms: int) -> dict[str, Any]:
    """The ``usage.report`` handler's arguments: the report plus the plan's terms from config."""
    return {
        "plan": plan.code,
        "used": used,
        "cycle": cycle,
        "quota": plan.quota_mb * MB,
        "ths": [t * MB for t in usage_settings(settings).thresholds_mb(plan)],
        "rate": plan.overage_fen_per_mb,
        "at": at_ms,
    }


def parse_event(settings: Settings, entry_id: str, fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """A stream entry -> (msisdn, handler args); ValueError says what is wrong with it."""
    msisdn = normalize_msisdn(fields.get("msisdn", ""), settings.subscribers.country_code)
    used_s = fields.get("used", "").strip()
    if not used_s.isascii() or not used_s.isdigit():
        raise ValueError(f"used must be a whole number of bytes, got {used_s!r}")
    used = int(used_s)
    if used > MAX_BYTES:
        raise ValueError(f"used {used} is more than 64 TB")
    cycle = fields.get("cycle", "").strip()
    if not CYCLE_RE.match(cycle):
        raise ValueError(f"cycle must be YYYY-MM, got {cycle!r}")
    plan = resolve_plan(settings, fields.get("plan"))
    at_s = fields.get("at", "").strip()
    if at_s:
        if not at_s.isascii() or not at_s.isdigit():
            raise ValueError(f"at must be ms since the epoch, got {at_s!r}")
        at_ms = int(at_s)
    else:
        at_ms = int(entry_id.split("-", 1)[0])
    return msisdn, report_args(settings, plan, used, cycle, at_ms)


@dataclass(frozen=True)
class UsageRecord:
    """The stored usage of a subscriber (the hash ``usage.lua`` writes), as values."""

    cycle: str
    plan: str
    used: int  # bytes
    quota: int  # bytes
    thresholds: list[int]  # bytes left, highest first
    alerted: list[int]  # the thresholds of `plan` marked as alerted, highest first
    rate: int  # fen per MB beyond the quota
    at: int  # ms: when the usage behind `used` was measured
    event_id: str  # the usage event that set `used` (field ``mo``)


def read_record(raw: dict[str, str]) -> UsageRecord | None:
    """The hash ``<prefix>:{N}:usage:<msisdn>`` (decoded) as a `UsageRecord`; None when there is none."""
    if not raw.get("cycle"):
        return None

    def number(name: str) -> int:
        try:
            return int(float(raw.get(name) or 0))
        except ValueError:
            return 0

    plan = raw.get("plan", "")
    try:
        thresholds = sorted((int(t) for t in json.loads(raw.get("ths") or "[]")), reverse=True)
    except (ValueError, TypeError):
        thresholds = []
    mark = f"alerted:{plan}:"
    alerted = sorted((int(k[len(mark):]) for k in raw if k.startswith(mark) and k[len(mark):].isdigit()), reverse=True)
    return UsageRecord(cycle=raw["cycle"], plan=plan, used=number("used"), quota=number("quota"), thresholds=thresholds,
                       alerted=alerted, rate=number("rate"), at=number("at"), event_id=raw.get("mo", ""))


def event_fields(msisdn: str, used: int, cycle: str, plan: str | None = None, at_ms: int | None = None, source: str = "") -> dict[str, str]:
    """The stream entry for one report (what `smsbot usage` writes; tests write the same)."""
    f = {"msisdn": msisdn, "used": str(used), "cycle": cycle,
         "at": str(at_ms if at_ms is not None else int(time.time() * 1000))}
    if plan:
        f["plan"] = plan
    if source:
        f["source"] = source
    return f


def mb(n_bytes: float, rounding: str = ROUND_HALF_UP) -> str:
    """Bytes -> MB with one decimal (1 MB = 1024 * 1024 bytes)."""
    return str((Decimal(int(n_bytes)) / MB).quantize(Decimal("0.1"), rounding=rounding))
