"""Complaints by SMS (the operator's consumer-rights station): ``TS``/``投诉`` opens a ticket, ``TSCX`` tracks it.

* ``TS <text>`` (also ``投诉 <text>``; any case, full width) opens a numbered ticket keeping the
  subscriber's own words exactly as typed (case, Chinese, punctuation, emoji: the raw text, not
  the normalised one), the time, and a reference to what they saw last on that short code (the
  open or lately expired 0000 menu / order list) and their latest charge. The reply gives the
  ticket number and the promised handling time (``commands.complaints.handling_hours``). A
  subscriber opens at most ``max_per_day`` tickets a calendar day (``timezone``); the rest get a
  polite refusal. An empty ``TS`` gets a usage hint.
* ``TSCX`` lists the subscriber's latest tickets and their state; ``TSCX <number>`` shows one
  (with customer care's answer once resolved). Only the subscriber's own tickets: another's
  number is "not found".
* Customer care: ``smsbot tickets list [--open] [--overdue]``, ``show N``, ``resolve N --reply
  "..."`` (`commands.complaints.tickets`); the answer reaches the subscriber by SMS through the
  outbox queue. Open tickets past their promised time are the gauge ``smsbot_tickets_overdue``.

All state is in Redis under the subscriber's hash tag (``complaints.lua`` documents the keys),
changed in one atomic step each, and every change is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smsbot.config import Settings
from smsbot.periods import zone
from smsbot.command import Command, Intent, Renderer, RenderContext
from smsbot.text import after_keyword

from commands.complaints import tickets
from commands.complaints.contract import KEYS_OPEN, KEYS_QUERY, OPEN, QUERY, id_width

OPEN_KEYWORDS = ("TS", "投诉")
QUERY_KEYWORD = "TSCX"
_FIRST = frozenset(kw[0] for kw in (*OPEN_KEYWORDS, QUERY_KEYWORD))


class ComplaintsSettings(BaseModel):
    """``commands.complaints`` in config (every key optional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handling_hours: float = Field(24, gt=0, le=24 * 90, description="promised time to answer a ticket")
    max_per_day: int = Field(3, ge=1, le=1000, description="tickets one subscriber may open per calendar day")
    max_chars: int = Field(1000, ge=10, le=10000, description="characters of the subscriber's text kept (longer: cut, marked)")
    list_max: int = Field(3, ge=1, le=10, description="tickets TSCX lists (the latest)")
    timezone: str = Field("Asia/Shanghai", description="calendar days (the daily limit) and times in replies")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)  # raises ValueError naming the zone
        return v


class ComplaintsCommand(Command):
    name = "complaints"
    help_template = "help"
    settings_model = ComplaintsSettings

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm[:1] not in _FIRST:  # the hot path: most texts (numbers, 0000) are not ours
            return None
        if norm.startswith(QUERY_KEYWORD):
            rest = norm[len(QUERY_KEYWORD):].strip(" :：#＃")
            if not rest:
                return Intent(QUERY, self.name, {"limit": self.options(settings).list_max}, keys=KEYS_QUERY)
            if rest.isascii() and rest.isdigit() and len(rest) <= 24:
                return Intent(QUERY, self.name, {"id": rest.lstrip("0") or "0", "limit": 1}, keys=KEYS_QUERY)
            if rest[0].isascii() and rest[0].isalpha():
                return None  # TSCXY...: not ours
            return Intent(QUERY, self.name, {"bad": True}, keys=KEYS_QUERY)
        for kw in OPEN_KEYWORDS:
            if not norm.startswith(kw):
                continue
            nxt = norm[len(kw):len(kw) + 1]
            if kw == "TS" and nxt.isascii() and nxt.isalnum():
                return None  # TSB..., TS1...: a word that merely begins with TS
            text = after_keyword(raw, kw)
            return Intent(OPEN, self.name, open_args(self.options(settings), settings, text or "", now_ms),
                          keys=KEYS_OPEN)
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {
            "complaints.opened": render_opened,
            "complaints.list": render_list,
            "complaints.status": render_status,
        }

    def refresh_metrics(self, metrics: Any, store: Any, settings: Settings) -> None:
        metrics.tickets_overdue.set(tickets.overdue_count(store))

    def api_routes(self, ctx: Any) -> Any:
        from commands.complaints import api  # FastAPI is loaded by the API process only, not by every bot

        return api.build_router(ctx)


def open_args(opts: ComplaintsSettings, settings: Settings, text: str, now_ms: int) -> dict[str, Any]:
    tz = zone(opts.timezone)
    day = datetime.fromtimestamp(now_ms / 1000, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    cut = len(text) > opts.max_chars
    return {
        "text": text[: opts.max_chars],
        "cut": cut,
        "handling_ms": int(opts.handling_hours * 3600 * 1000),
        "hours": f"{opts.handling_hours:g}",
        "max_per_day": opts.max_per_day,
        "day_start": int(day.timestamp() * 1000),
        "width": id_width(settings),
    }


# -- rendering --------------------------------------------------------------------------------------
def _opts(ctx: RenderContext) -> ComplaintsSettings:
    return ComplaintsSettings.model_validate(ctx.settings.commands.get("complaints") or {})


def _when(ctx: RenderContext, ms: Any) -> str:
    dt = datetime.fromtimestamp(int(ms) / 1000, zone(_opts(ctx).timezone))
    return ctx.t("time", month=dt.month, day=dt.day, hm=dt.strftime("%H:%M"), mon=dt.strftime("%b"))


def render_opened(ctx: RenderContext, d: dict[str, Any]) -> str:
    return ctx.t("opened", id=d["id"], hours=d.get("hours", ""), due=_when(ctx, d["due"]))


def _state(ctx: RenderContext, state: str, due: Any, resolved: Any, now: Any) -> str:
    if state == "resolved":
        return ctx.t("state_resolved", resolved=_when(ctx, resolved))
    if int(due) < int(now):
        return ctx.t("state_overdue", due=_when(ctx, due))
    return ctx.t("state_open", due=_when(ctx, due))


def render_list(ctx: RenderContext, d: dict[str, Any]) -> str:
    items = d.get("items") if isinstance(d.get("items"), list) else []
    lines = [ctx.t("list_header", total=d["total"], open=d["open"])]
    for tid, state, opened, due, resolved in items:
        lines.append(ctx.t("list_item", id=tid, opened=_when(ctx, opened), state=_state(ctx, state, due, resolved, d["now"])))
    lines.append(ctx.t("list_footer"))
    return "\n".join(lines)


def render_status(ctx: RenderContext, d: dict[str, Any]) -> str:
    if d["state"] == "resolved":
        return ctx.t("status_resolved", id=d["id"], opened=_when(ctx, d["opened"]), resolved=_when(ctx, d["resolved"]),
                     answer=d.get("answer", ""))
    tpl = "status_overdue" if int(d["due"]) < int(d["now"]) else "status_open"
    return ctx.t(tpl, id=d["id"], opened=_when(ctx, d["opened"]), due=_when(ctx, d["due"]))
