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

from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from smsbot import log
from smsbot.config import Language, Settings
from smsbot.events import Event, EventSource
from smsbot.keys import USAGE_EVENTS_GROUP
from smsbot.command import Command, Intent, Renderer, RenderContext

from commands.usage.reports import (CYCLE_AHEAD_MONTHS, CYCLE_PAST_MONTHS, CYCLE_RE, MAX_BYTES, MB, NAME, UsageRecord,  # noqa: F401  (the package's names)
                                    alert_short_code, check_cycle_near, current_cycle, event_fields, mb, parse_event,
                                    parse_size, read_record, report_args, resolve_plan)
from commands.usage.settings import DataPlan, UsageSettings, usage_settings  # noqa: F401  (the package's names)

QUERY_KEYWORDS = frozenset({"CXLL"})
REPORT_HANDLER = "usage.report"
_log = log.get("smsbot.usage")


# -- the command ------------------------------------------------------------------------------------
class UsageCommand(Command):
    name = NAME
    help_template = "help"
    settings_model = UsageSettings
    former_settings = {"usage": ""}  # the top-level `usage:` section of before
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

    def api_routes(self, ctx: Any) -> Any:
        from commands.usage import api  # FastAPI is loaded by the API process only, not by every bot

        return api.build_router(ctx)

    def cli_commands(self, cli: Any) -> list[Any]:
        from commands.usage import cli as commands_cli  # click's commands are built by the `smsbot` CLI only

        return commands_cli.build_commands(cli)

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
def _quota(n_bytes: float) -> str:
    v = Decimal(int(n_bytes)) / MB
    return str(v.to_integral_value()) if v == v.to_integral_value() else mb(n_bytes)


def _rate(fen: float) -> str:
    return f"{int(fen) / 100:.2f}".rstrip("0").rstrip(".")


def _plan_name(ctx: RenderContext, code: str) -> str:
    plan = usage_settings(ctx.settings).plan(code)
    if plan is None:
        return code
    if ctx.lang == Language.EN.value and plan.name_en:
        return plan.name_en
    return plan.name


def _when(ctx: RenderContext, at_ms: float) -> str:
    dt = datetime.fromtimestamp(int(at_ms) / 1000, ZoneInfo(usage_settings(ctx.settings).timezone))
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
