"""Data usage: alerts when a plan's remaining data reaches its thresholds, and the CXLL query.

**Reports.** The billing side (or ``smsbot usage MSISDN --used 95MB``) appends one entry per usage
report to the stream ``<prefix>:events:usage`` (`Keys.usage_events`)::

    XADD smsbot:events:usage * msisdn 13800138000 plan 4G_1GB used 99614720 cycle 2026-11 at 1795600000000

``msisdn``
    the subscriber (normalised like an MO sender: ``+86 138...`` -> ``86138...``).
``used``
    bytes used in the cycle so far, a running total (integer, at most 64 TB).
``cycle``
    the billing cycle, ``YYYY-MM``; cycles compare as text, so later months sort later.
``plan``
    a plan code of ``usage.plans``; empty or absent: ``usage.default_plan``.
``at``
    when the usage was measured, ms since the epoch; absent: the time in the entry id.

Each bot instance reads the stream in the consumer group ``usage`` (`smsbot.events`): every report
goes to one instance; a batch of reports is applied in one pipelined round trip, one atomic Lua
step (``usage.report`` in ``usage.lua``) per report, and acknowledged after. Malformed reports
(bad number, size, cycle, unknown plan) are logged (``usage_event_rejected``) and acknowledged.

**Rules** (all inside the one Lua step, on the hash ``<prefix>:{N}:usage:<msisdn>``):

* a report of an older cycle than the stored one is ignored (a late report of a past cycle);
* a report of a newer cycle replaces the state: a new cycle starts clean, no alert marks;
* within the cycle only a *higher* total changes anything (``used = max(stored, reported)``):
  because the total is cumulative, a duplicate or an older report that arrives late says nothing
  new and is ignored, and applying the same report twice (an instance died before XACK) is harmless;
* the plan, quota, thresholds and rate of the report that set the highest total are stored with it;
* with ``left = quota - used``, every threshold ``t`` with ``left <= t`` is *reached*. If the
  lowest reached threshold has no alert mark yet, ONE alert goes out for it (a jump across 10 and
  5 MB sends one message, for 5 MB) and every reached threshold is marked; otherwise nothing is
  sent. Marks are per plan and threshold (``alerted:<plan>:<bytes>``), so each threshold alerts at
  most once per subscriber per cycle. The check and the marks are one script, so several
  instances applying reports of one subscriber at once cannot both alert.

The alert is a reply intent on the subscriber's outbox from ``usage.short_code`` (default: the
first short code enabling ``usage``) in that short code's language; it states what is left and the
out-of-plan rate (``usage.exhausted`` once nothing is left). 1 MB = 1024 * 1024 bytes; remaining
data is shown rounded down to 0.1 MB, used data rounded to the nearest 0.1 MB.

**CXLL** (any case, full width too) answers with used and remaining data of the current cycle
(in ``usage.timezone``) and the plan name; a subscriber without any usage record gets
``usage.no_plan``. If the stored record is of a past cycle, nothing is used yet this cycle.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from smsbot import log
from smsbot.config import DataPlan, Language, Settings
from smsbot.events import Event, EventSource
from smsbot.keys import USAGE_EVENTS_GROUP
from smsbot.msisdn import normalize_msisdn
from smsbot.command import Command, Intent, Renderer, RenderContext

MB = 1024 * 1024
CYCLE_PAST_MONTHS = 12  # a report this far back is harmless (ignored) but likely a typo: refused unless forced
CYCLE_AHEAD_MONTHS = 1  # next month: clocks at the month's turn
MAX_BYTES = 64 * 1024 * MB * 1024  # 64 TB: exact in Lua numbers and in cjson's 14 significant digits
QUERY_KEYWORDS = frozenset({"CXLL"})
REPORT_HANDLER = "usage.report"
CYCLE_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]I?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 0, "B": 1, "K": 1024, "M": MB, "G": 1024 * MB, "T": 1024 * 1024 * MB}
_log = log.get("smsbot.usage")


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
    return datetime.fromtimestamp(t, ZoneInfo(settings.usage.timezone)).strftime("%Y-%m")


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
    if settings.usage.short_code:
        return settings.usage.short_code
    for sc in settings.short_codes:
        if UsageCommand.name in sc.commands:
            return sc.code
    return None


def resolve_plan(settings: Settings, code: str | None) -> DataPlan:
    """The plan `code` names (None/empty: ``usage.default_plan``); ValueError naming the known plans."""
    u = settings.usage
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
        "ths": [t * MB for t in settings.usage.thresholds_mb(plan)],
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


# -- the command ------------------------------------------------------------------------------------
class UsageCommand(Command):
    name = "usage"
    help_template = "help"
    legacy_names = {
        "usage_alert": "usage.alert",
        "usage_report": "usage.report",
        "usage_no_plan": "usage.no_plan",
        "usage_exhausted": "usage.exhausted",
        "usage_report_over": "usage.report_over",
        "usage_time": "usage.time",
        "usage_period": "usage.period",
        "cmd_usage": "usage.help",
    }

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm in QUERY_KEYWORDS:
            return Intent("usage.query", self.name, {"cycle": current_cycle(settings)}, keys=("usage",))
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {"usage.alert": render_alert, "usage.report": render_report}

    def event_sources(self, settings: Settings, store: Any) -> list[EventSource]:
        short_code = alert_short_code(settings)
        if short_code is None:
            return []
        lang = settings.short_code(short_code).language.value  # type: ignore[union-attr]

        def apply(events: list[Event]) -> list[str]:
            return apply_reports(settings, store, short_code, lang, events)

        return [EventSource("usage", store.keys.usage_events(), USAGE_EVENTS_GROUP, apply)]


def apply_reports(settings: Settings, store: Any, short_code: str, lang: str, events: list[Event]) -> list[str]:
    """Apply a batch of usage reports in one round trip; return the ids that are done (to XACK)."""
    done: list[str] = []
    calls, owners = [], []
    for entry_id, fields in events:
        try:
            msisdn, args = parse_event(settings, entry_id, fields)
        except ValueError as e:
            _log.warning("usage_event_rejected", id=entry_id, msisdn=fields.get("msisdn", ""), reason=str(e))
            done.append(entry_id)
            continue
        calls.append(store.mo_call(REPORT_HANDLER, msisdn, short_code, lang=lang, correlation=entry_id,
                                   args=args, extra_keys=("usage",)))
        owners.append((entry_id, msisdn, args))
    if not calls:
        return done
    for (entry_id, msisdn, args), res in zip(owners, store.run_batch(calls)):
        if isinstance(res, Exception):
            _log.error("usage_event_failed", id=entry_id, msisdn=msisdn, error=str(res))
            continue
        done.append(entry_id)
        if res.outcome == "alerted":
            _log.info("usage_alert", id=entry_id, msisdn=msisdn, plan=args["plan"], cycle=args["cycle"],
                      threshold_mb=int(res.extra or 0) / MB, used_mb=round(args["used"] / MB, 1))
    return done


# -- rendering --------------------------------------------------------------------------------------
def mb(n_bytes: float, rounding: str = ROUND_HALF_UP) -> str:
    """Bytes -> MB with one decimal (1 MB = 1024 * 1024 bytes)."""
    return str((Decimal(int(n_bytes)) / MB).quantize(Decimal("0.1"), rounding=rounding))


def _quota(n_bytes: float) -> str:
    v = Decimal(int(n_bytes)) / MB
    return str(v.to_integral_value()) if v == v.to_integral_value() else mb(n_bytes)


def _rate(fen: float) -> str:
    return f"{int(fen) / 100:.2f}".rstrip("0").rstrip(".")


def _plan_name(ctx: RenderContext, code: str) -> str:
    plan = ctx.settings.usage.plan(code)
    if plan is None:
        return code
    if ctx.lang == Language.EN.value and plan.name_en:
        return plan.name_en
    return plan.name


def _when(ctx: RenderContext, at_ms: float) -> str:
    dt = datetime.fromtimestamp(int(at_ms) / 1000, ZoneInfo(ctx.settings.usage.timezone))
    return ctx.t("time", year=dt.year, month=dt.month, day=dt.day, hm=dt.strftime("%H:%M"), mon=dt.strftime("%b"))


def _period(ctx: RenderContext, cycle: str) -> str:
    year, month = cycle.split("-", 1)
    mon = datetime(int(year), int(month), 1).strftime("%b")
    return ctx.t("period", year=year, month=int(month), mon=mon)


def _values(ctx: RenderContext, d: dict[str, Any]) -> dict[str, str]:
    used, quota = int(d["used"]), int(d["quota"])
    return {
        "plan": _plan_name(ctx, str(d["plan"])),
        "used": mb(used),
        "left": mb(max(quota - used, 0), ROUND_DOWN),
        "over": mb(max(used - quota, 0)),
        "quota": _quota(quota),
        "rate": _rate(d.get("rate", 0)),
    }


def render_alert(ctx: RenderContext, d: dict[str, Any]) -> str:
    v = _values(ctx, d)
    tpl = "exhausted" if int(d["used"]) >= int(d["quota"]) else "alert"
    return ctx.t(tpl, time=_when(ctx, d["at"]), **v)


def render_report(ctx: RenderContext, d: dict[str, Any]) -> str:
    v = _values(ctx, d)
    tpl = "report_over" if int(d["used"]) > int(d["quota"]) else "report"
    return ctx.t(tpl, period=_period(ctx, str(d["cycle"])), **v)
