"""Charge reminders (扣费提醒): orders from an event stream, cancel by reply, and on-demand use events.

* **Orders** arrive on the stream ``<prefix>:events:orders`` (consumer group ``orders``; see the
  README for the event format). Each becomes one ``order_placed`` step (``reminders.lua``): a
  ``pending`` subscription whose first charge is due after ``billing.grace_seconds[kind]``, and a
  reminder naming the service, the price and the cancel word, queued on the outbox at once.
  Idempotent by order id, so a redelivered or re-claimed event changes nothing.
* **Cancel words** (``billing.cancel_words``: TD, 取消, N by default) run ``reminder_cancel``: one
  order in its grace period -> cancelled and named, never charged; several -> a numbered list and
  a question (``conversations.orders`` takes the numeric answer); none in grace but a recent order
  past its grace -> cancelled from the next period on, and the reply says so.
* **Use events** of on-demand services arrive on ``<prefix>:events:uses`` (group ``uses``) and are
  charged once each by ``use_charge`` (ledger field ``<code>:use:<id>``).

The billing run itself (``bill``) is started by ``smsbot billing run`` (`smsbot.billing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smsbot import log
from smsbot.config import BillingKind, Language, Settings
from smsbot.events import Event, EventSource
from smsbot.keys import ORDER_EVENTS_GROUP, USE_EVENTS_GROUP
from smsbot.msisdn import normalize_msisdn
from smsbot.periods import bounds_around, format_time, parse_time, zone
from smsbot.router import Command, Intent, Renderer, RenderContext

_log = log.get("smsbot.reminders")
NAME = "reminders"


class RemindersCommand(Command):
    name = NAME
    lua_file = Path(__file__).with_suffix(".lua")
    help_template = "cmd_reminders"

    def match(self, norm: str, settings: Settings) -> Intent | None:
        if norm in settings.billing.cancel_words:
            return Intent("reminder_cancel", self.name, cancel_args(settings, int(time.time() * 1000)))
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {
            "reminder": render_reminder,
            "reminder_cancelled": render_cancelled,
            "reminder_which": render_which,
        }

    def event_sources(self, settings: Settings, store: Any) -> list[EventSource]:
        keys = store.keys
        return [
            EventSource("orders", keys.order_events(), ORDER_EVENTS_GROUP, lambda evs: apply_orders(settings, store, evs)),
            EventSource("uses", keys.use_events(), USE_EVENTS_GROUP, lambda evs: apply_uses(settings, store, evs)),
        ]


def cancel_args(settings: Settings, now_ms: int) -> dict[str, Any]:
    """Arguments of the ``reminder_cancel`` step for an MO at `now_ms` (month boundaries for 'from next month')."""
    b = settings.billing
    return {
        "periods": bounds_around(now_ms, zone(b.timezone)),
        "validity_ms": b.choice_validity_seconds * 1000,
        "keep_ms": settings.menu.expired_notice_seconds * 1000,
        "late_ms": b.late_cancel_seconds * 1000,
        "word": b.cancel_words[0],
    }


def reminder_short_code(settings: Settings) -> tuple[str, str] | None:
    """(short code, language) that sends reminders and takes the cancel words, or None if none enables them."""
    b = settings.billing
    for sc in settings.short_codes:
        if (b.short_code is None and NAME in sc.commands) or sc.code == b.short_code:
            return sc.code, sc.language.value
    return None


# -- events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    order_id: str
    msisdn: str
    service: str
    at_ms: int


@dataclass(frozen=True)
class Use:
    use_id: str
    msisdn: str
    service: str
    at_ms: int


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _common(settings: Settings, entry_id: str, f: dict[str, str]) -> tuple[str, str, int]:
    try:
        msisdn = normalize_msisdn(f.get("msisdn", ""))
    except ValueError as e:
        raise ValueError(str(e)) from None
    code = f.get("service", "").strip().upper()
    if settings.service(code) is None:
        raise ValueError(f"unknown service code {code!r}")
    at = f.get("at")
    at_ms = parse_time(at, zone(settings.billing.timezone)) if at else _entry_ms(entry_id)
    return msisdn, code, at_ms


def parse_order(settings: Settings, entry_id: str, f: dict[str, str]) -> Order:
    """Stream entry -> Order; ValueError names what is wrong. ``order_id`` defaults to the entry id."""
    msisdn, code, at_ms = _common(settings, entry_id, f)
    order_id = (f.get("order_id") or entry_id).strip()
    if not order_id or len(order_id) > 128:
        raise ValueError("order_id must be 1 to 128 characters")
    return Order(order_id, msisdn, code, at_ms)


def parse_use(settings: Settings, entry_id: str, f: dict[str, str]) -> Use:
    msisdn, code, at_ms = _common(settings, entry_id, f)
    svc = settings.service(code)
    assert svc is not None
    if svc.kind is not BillingKind.ON_DEMAND:
        raise ValueError(f"service {code} is not on-demand")
    use_id = (f.get("use_id") or entry_id).strip()
    if not use_id or len(use_id) > 128:
        raise ValueError("use_id must be 1 to 128 characters")
    return Use(use_id, msisdn, code, at_ms)


def order_call(settings: Settings, store: Any, order: Order, correlation: str) -> Any:
    sc = reminder_short_code(settings) or (settings.short_codes[0].code, settings.short_codes[0].language.value)
    svc = settings.service(order.service)
    assert svc is not None
    return store.mo_call(
        "order_placed", order.msisdn, sc[0], lang=sc[1], correlation=correlation, now_ms=order.at_ms,
        args={
            "order_id": order.order_id, "service": order.service, "kind": svc.kind.value,
            "grace_ms": settings.billing.grace_seconds[svc.kind] * 1000, "word": settings.billing.cancel_words[0],
        },
        extra_keys=("orders",),
    )


def use_call(settings: Settings, store: Any, use: Use, correlation: str) -> Any:
    svc = settings.service(use.service)
    assert svc is not None
    return store.mo_call(
        "use_charge", use.msisdn, "-", correlation=correlation, now_ms=use.at_ms,
        args={"use_id": use.use_id, "service": use.service, "kind": svc.kind.value, "fen": svc.price_fen},
        extra_keys=("ledger",),
    )


def _apply(store: Any, events: list[Event], build: Any, what: str) -> list[str]:
    done: list[str] = []
    calls, ids = [], []
    for entry_id, fields in events:
        try:
            calls.append(build(entry_id, fields))
            ids.append(entry_id)
        except ValueError as e:  # malformed: recorded, acknowledged (it would come back forever)
            _log.warning(f"{what}_rejected", entry=entry_id, error=str(e))
            done.append(entry_id)
    if calls:
        for entry_id, res in zip(ids, store.run_batch(calls)):
            if isinstance(res, Exception):
                _log.error(f"{what}_failed", entry=entry_id, error=str(res))
            else:
                _log.info(what, entry=entry_id, outcome=res.outcome)
                done.append(entry_id)
    return done


def apply_orders(settings: Settings, store: Any, events: list[Event]) -> list[str]:
    """One pipelined round trip for a batch of order events; returns the ids to acknowledge."""
    return _apply(store, events, lambda i, f: order_call(settings, store, parse_order(settings, i, f), i), "order")


def apply_uses(settings: Settings, store: Any, events: list[Event]) -> list[str]:
    return _apply(store, events, lambda i, f: use_call(settings, store, parse_use(settings, i, f), i), "use")


# -- rendering --------------------------------------------------------------------------------------
def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []  # cjson encodes an empty Lua table as {}


def _period_text(ctx: RenderContext, label: str | None) -> str:
    if not label:
        return ctx.t("reminder_next_period_unknown")
    y, m = (int(x) for x in label.split("-"))
    if ctx.lang == Language.EN.value:
        import calendar

        return f"{calendar.month_name[m]} {y}"
    return f"{y}年{m}月"


def render_reminder(ctx: RenderContext, data: dict[str, Any]) -> str:
    code = data["code"]
    due = format_time(int(data["due"]), zone(ctx.settings.billing.timezone))
    return ctx.t("reminder", name=ctx.service_name(code), price=ctx.price(code), due=due, word=data.get("word") or "TD")


def render_cancelled(ctx: RenderContext, data: dict[str, Any]) -> str:
    lines = []
    for item in _list(data.get("items")):
        name = ctx.service_name(item["code"])
        how = item.get("how")
        if how == "free":
            lines.append(ctx.t("reminder_cancelled_free", name=name))
        elif how == "now":
            lines.append(ctx.t("reminder_cancelled_now", name=name))
        else:
            lines.append(ctx.t("reminder_cancelled_next", name=name, next=_period_text(ctx, item.get("next"))))
    lines += [ctx.t("menu_already_item", name=ctx.service_name(c)) for c in _list(data.get("already"))]
    return "\n".join(lines)


def render_which(ctx: RenderContext, data: dict[str, Any]) -> str:
    items = _list(data.get("items"))
    lines = [ctx.t("reminder_which_header", n=len(items))]
    for n, code in enumerate(items, start=1):
        lines.append(ctx.t("menu_item", n=n, name=ctx.service_name(code), price=ctx.price(code)))
    lines.append(ctx.t("reminder_which_footer", n=len(items)))
    return "\n".join(lines)
