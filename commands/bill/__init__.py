"""CXZD: the itemized bill (账单) of this month so far, or of an earlier month.

``CXZD`` (any case, full width; also ``账单``) to 10086 answers with this month's charges, one
line per service (monthly charges, and on-demand uses counted) in yuan with two decimals, and the
total; ``CXZD 202611`` (or ``CXZD 2026-11``, ``CXZD 2026年11月``) asks for another month. The
figures come from the subscriber's own ledger (``<prefix>:{N}:ledger:<msisdn>``, declared key
``ledger``), read in the one atomic step ``bill.query`` (``bill.lua``): a charge belongs to the
month (in ``billing.timezone``) holding its ledger time, exactly as ``smsbot billing ledger``
lists it (`smsbot.billing.statement` is the same rule). A month with no charge says so; a month
still to come, or an argument that is not a month, gets a short hint. Long bills go out as
concatenated parts like every long reply.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from typing import Any

from smsbot.config import Language, Settings
from smsbot.periods import period_by_label, period_of, zone
from smsbot.command import Command, Intent, Renderer, RenderContext

KEYWORDS = ("CXZD", "账单")
# 202611, 2026-11, 2026/11, 2026.11, 2026 11, 2026年11月 (normalised: full-width digits are ASCII)
_MONTH = re.compile(r"^(\d{4})\s*(?:[-/.年]\s*)?(\d{1,2})\s*月?$")
_LEAD = " :：,，"
_FIRST = frozenset(kw[0] for kw in KEYWORDS)


def parse_month(text: str) -> tuple[int, int] | None:
    m = _MONTH.match(text)
    if not m:
        return None
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12 or year < 2000:
        return None
    return year, month


class BillCommand(Command):
    name = "bill"
    help_template = "help"

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm[:1] not in _FIRST:  # the hot path: most texts (numbers, 0000) are not ours
            return None
        for kw in KEYWORDS:
            if norm.startswith(kw):
                rest = norm[len(kw):].strip(_LEAD)
                break
        else:
            return None
        if rest and not rest[0].isdigit():
            return None  # CXZDX..., 账单不对...: not a bill query (help, or another command's)
        return Intent("bill.query", self.name, query_args(settings, rest, now_ms), keys=("ledger",))

    def renderers(self) -> dict[str, Renderer]:
        return {"bill.statement": render_statement, "bill.empty": render_empty, "bill.future": render_future}


def query_args(settings: Settings, rest: str, now_ms: int) -> dict[str, Any]:
    """The ``bill.query`` step's arguments for the month asked for (`rest`: '' = this month)."""
    tz = zone(settings.billing.timezone)
    current = period_of(now_ms, tz)
    if rest:
        ym = parse_month(rest)
        if ym is None:
            return {"bad": "usage"}
        label = f"{ym[0]:04d}-{ym[1]:02d}"
        if label > current.label:
            return {"bad": "future", "period": label}
        p = period_by_label(label, tz)
    else:
        p = current
    return {"period": p.label, "start": p.start_ms, "end": p.end_ms, "current": p.label == current.label}


# -- rendering --------------------------------------------------------------------------------------
def yuan(fen: int) -> str:
    """Integer fen -> yuan with two decimals, exactly (1505 -> '15.05')."""
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _month(ctx: RenderContext, label: str) -> str:
    y, m = (int(x) for x in label.split("-"))
    if ctx.lang == Language.EN.value:
        return f"{calendar.month_name[m]} {y}"
    return f"{y}年{m}月"


def _as_of(ctx: RenderContext, now_ms: int) -> str:
    dt = datetime.fromtimestamp(int(now_ms) / 1000, zone(ctx.settings.billing.timezone))
    return ctx.t("as_of", month=dt.month, day=dt.day, hm=dt.strftime("%H:%M"), mon=dt.strftime("%b"))


def _items(v: Any) -> list[list[Any]]:
    return v if isinstance(v, list) else []  # cjson encodes an empty Lua table as {}


def render_statement(ctx: RenderContext, d: dict[str, Any]) -> str:
    month = _month(ctx, str(d["period"]))
    head = ctx.t("header_current", month=month, as_of=_as_of(ctx, d["now"])) if d.get("current") else ctx.t("header", month=month)
    lines = [head]
    for code, n, fen, on_demand in _items(d.get("items")):
        name = ctx.service_name(str(code))
        if int(on_demand):
            lines.append(ctx.t("line_uses", name=name, n=int(n), amount=yuan(fen)))
        else:
            lines.append(ctx.t("line", name=name, amount=yuan(fen)))
    lines.append(ctx.t("total", amount=yuan(d.get("total", 0))))
    return "\n".join(lines)


def render_empty(ctx: RenderContext, d: dict[str, Any]) -> str:
    return ctx.t("empty", month=_month(ctx, str(d["period"])))


def render_future(ctx: RenderContext, d: dict[str, Any]) -> str:
    return ctx.t("future", month=_month(ctx, str(d["period"])))
