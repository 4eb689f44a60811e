"""Orders: charge reminders (扣费提醒), cancel by reply, and the on-demand use events.

(Called ``reminders`` before it became a package; that name is still accepted in a short code's
command list, and ``smsbot config check`` notes it.)

* **Orders** arrive on the stream ``<prefix>:events:orders`` (consumer group ``orders``; see the
  README for the event format). Each becomes one ``orders.place`` step (``orders.lua``): a
  ``pending`` subscription whose first charge is due after ``commands.orders.grace_seconds[kind]``, and a
  reminder naming the service, the price and the cancel word, queued on the outbox at once.
  Idempotent by order id, so a redelivered or re-claimed event changes nothing.
* **Cancel words** (``commands.orders.cancel_words``: TD, 取消, N by default) run ``orders.cancel``: one
  order in its grace period -> cancelled and named, never charged; several -> a numbered list and
  a question (``conversations.orders`` takes the numeric answer); none in grace but a recent order
  past its grace -> cancelled from the next period on, and the reply says so.
* **Use events** of on-demand services arrive on ``<prefix>:events:uses`` (group ``uses``) and are
  charged once each by the billing step ``billing.charge_use`` (`smsbot.billing`).

Whether a cancel is free is the billing rule ``BILLING.in_grace`` (``smsbot/lua/billing_rules.lua``,
the one definition `smsbot billing verify` uses too), placed before ``orders.lua``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from typing import Any

from smsbot import billing, log
from smsbot.config import Language, Settings
from smsbot.events import Event, EventSource
from smsbot.keys import ORDER_EVENTS_GROUP, USE_EVENTS_GROUP
from smsbot.periods import bounds_around, format_time, zone
from smsbot.command import Command, Intent, Renderer, RenderContext

from commands.orders.events import ALIASES, NAME, reminder_short_code
from commands.orders.settings import FORMER_SETTINGS, OrdersSettings, orders_settings
from commands.orders.steps import STEPS

_log = log.get("smsbot.orders")


class OrdersCommand(Command):
    name = NAME
    aliases = ALIASES
    help_template = "help"
    lua_libraries = (billing.RULES_LUA,)
    settings_model = OrdersSettings
    former_settings = FORMER_SETTINGS  # billing.cancel_words etc. of before
    steps = STEPS  # the HTTP API's idempotent order and use events (event.lua)
    legacy_names = {
        "reminder": "orders.reminder",
        "reminder_cancelled": "orders.cancelled",
        "reminder_which": "orders.which",
        "reminder_nothing": "orders.nothing",
        "orders_invalid": "orders.invalid",
        "orders_expired": "orders.expired",
        "reminder_cancelled_free": "orders.cancelled_free",
        "reminder_cancelled_next": "orders.cancelled_next",
        "reminder_cancelled_now": "orders.cancelled_now",
        "reminder_next_period_unknown": "orders.next_period_unknown",
        "reminder_which_header": "orders.which_header",
        "reminder_which_footer": "orders.which_footer",
        "cmd_reminders": "orders.help",
    }

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm in orders_settings(settings).cancel_words:
            return Intent("orders.cancel", self.name, cancel_args(settings, now_ms))
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {
            "orders.reminder": render_reminder,
            "orders.cancelled": render_cancelled,
            "orders.which": render_which,
        }

    def api_routes(self, ctx: Any) -> Any:
        from commands.orders import api  # FastAPI is loaded by the API process only, not by every bot

        return api.build_router(ctx)

    def cli_commands(self, cli: Any) -> list[Any]:
        from commands.orders import cli as commands_cli  # click's commands are built by the `smsbot` CLI only

        return commands_cli.build_commands(cli)

    def event_sources(self, settings: Settings, store: Any) -> list[EventSource]:
        keys = store.keys
        return [
            EventSource("orders", keys.order_events(), ORDER_EVENTS_GROUP, lambda evs: apply_orders(settings, store, evs)),
            EventSource("uses", keys.use_events(), USE_EVENTS_GROUP, lambda evs: apply_uses(settings, store, evs)),
        ]


def cancel_args(settings: Settings, now_ms: int) -> dict[str, Any]:
    """Arguments of the ``orders.cancel`` step for an MO at `now_ms` (month boundaries for 'from next month')."""
    b = orders_settings(settings)
    return {
        "periods": bounds_around(now_ms, zone(settings.billing.timezone)),
        "validity_ms": b.choice_validity_seconds * 1000,
        "keep_ms": settings.menu.expired_notice_seconds * 1000,
        "late_ms": b.late_cancel_seconds * 1000,
        "word": b.cancel_words[0],
    }


# -- events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Order:
    order_id: str
    msisdn: str
    service: str
    at_ms: int


def parse_order(settings: Settings, entry_id: str, f: dict[str, str]) -> Order:
    """Stream entry -> Order; ValueError names what is wrong. ``order_id`` defaults to the entry id."""
    msisdn, code, at_ms = billing.event_common(settings, entry_id, f)
    order_id = (f.get("order_id") or entry_id).strip()
    if not order_id or len(order_id) > 128:
        raise ValueError("order_id must be 1 to 128 characters")
    return Order(order_id, msisdn, code, at_ms)


parse_use = billing.parse_use  # the use-event format belongs to billing (verify reads it too)
Use = billing.Use


def order_call(settings: Settings, store: Any, order: Order, correlation: str) -> Any:
    sc = reminder_short_code(settings) or (settings.short_codes[0].code, settings.short_codes[0].language.value)
    svc = settings.service(order.service)
    assert svc is not None
    own = orders_settings(settings)
    return store.mo_call(
        "orders.place", order.msisdn, sc[0], lang=sc[1], correlation=correlation, now_ms=order.at_ms,
        args={
            "order_id": order.order_id, "service": order.service, "kind": svc.kind.value,
            "grace_ms": own.grace_seconds[svc.kind] * 1000, "word": own.cancel_words[0],
        },
        extra_keys=("orders",),
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
    return _apply(store, events, lambda i, f: billing.use_call(settings, store, billing.parse_use(settings, i, f), i), "use")


# -- rendering --------------------------------------------------------------------------------------
def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []  # cjson encodes an empty Lua table as {}


def _period_text(ctx: RenderContext, label: str | None) -> str:
    if not label:
        return ctx.t("next_period_unknown")
    y, m = (int(x) for x in label.split("-"))
    if ctx.lang == Language.EN.value:
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
            lines.append(ctx.t("cancelled_free", name=name))
        elif how == "now":
            lines.append(ctx.t("cancelled_now", name=name))
        else:
            lines.append(ctx.t("cancelled_next", name=name, next=_period_text(ctx, item.get("next"))))
    lines += [ctx.t("already_item", name=ctx.service_name(c)) for c in _list(data.get("already"))]
    return "\n".join(lines)


def render_which(ctx: RenderContext, data: dict[str, Any]) -> str:
    items = _list(data.get("items"))
    lines = [ctx.t("which_header", n=len(items))]
    for n, code in enumerate(items, start=1):
        lines.append(ctx.t("item", n=n, name=ctx.service_name(code), price=ctx.price(code)))
    lines.append(ctx.t("which_footer", n=len(items)))
    return "\n".join(lines)
