"""0000: list the subscriber's services as a numbered menu; numbers reply to cancel.

Monthly services come first, then on-demand ones; when there are on-demand ones, each kind has its
own heading (``header_mixed``, ``monthly_heading``, ``ondemand_heading``), otherwise the menu is
headed ``header`` as always. A menu of one item ends with ``footer_one`` and answers a wrong reply
with ``invalid_one`` ("reply 1"), not a range from 1 to 1. The Lua step stores the menu in that order (it is given the on-demand
codes), so the numbers shown are the numbers that cancel.

Matching: ``0000`` and ``00000`` (full-width too, via normalisation). The atomic steps live in
``subscriptions.lua``: ``subscriptions.menu`` opens the menu conversation (stored type ``menu``),
``conversations.menu`` handles a numeric reply while it is open; ``subscriptions.admin_subscribe``
/ ``admin_unsubscribe`` are the operator's `smsbot subs add|remove`. This module renders the replies.
"""

from __future__ import annotations

from typing import Any

from smsbot.config import BillingKind, Settings
from smsbot.command import Command, Intent, Renderer, RenderContext

MENU_KEYWORDS = frozenset({"0000", "00000"})
ADMIN_SUBSCRIBE = "subscriptions.admin_subscribe"
ADMIN_UNSUBSCRIBE = "subscriptions.admin_unsubscribe"


class SubscriptionsCommand(Command):
    name = "subscriptions"
    help_template = "help"
    legacy_conversations = ("menu",)
    legacy_names = {
        "menu": "subscriptions.menu",
        "menu_cancelled": "subscriptions.cancelled",
        "menu_invalid": "subscriptions.invalid",
        "menu_empty": "subscriptions.empty",
        "menu_expired": "subscriptions.expired",
        "menu_header": "subscriptions.header",
        "menu_item": "subscriptions.item",
        "menu_truncated": "subscriptions.truncated",
        "menu_footer": "subscriptions.footer",
        "menu_cancelled_item": "subscriptions.cancelled_item",
        "menu_already_item": "subscriptions.already_item",
        "menu_cancelled_footer": "subscriptions.cancelled_footer",
        "cmd_subscriptions": "subscriptions.help",
    }

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm in MENU_KEYWORDS:
            m = settings.menu
            cached = self._intent
            if cached is None or cached[0] is not m or cached[1] is not settings.services:
                args: dict[str, Any] = {"validity_ms": m.validity_seconds * 1000, "keep_ms": m.expired_notice_seconds * 1000,
                                        "max_items": m.max_items}
                on_demand = sorted(s.code for s in settings.services if s.kind is BillingKind.ON_DEMAND)
                if on_demand:
                    args["on_demand"] = on_demand
                cached = self._intent = (m, settings.services, Intent("subscriptions.menu", self.name, args))
            return cached[2]
        return None

    _intent: tuple[object, object, Intent] | None = None  # the menu intent for the current menu settings and catalogue

    def renderers(self) -> dict[str, Renderer]:
        return {"subscriptions.menu": render_menu, "subscriptions.cancelled": render_cancelled,
                "subscriptions.invalid": render_invalid}


def _on_demand(ctx: RenderContext, code: str) -> bool:
    svc = ctx.settings.service(code)
    return svc is not None and svc.kind is BillingKind.ON_DEMAND


def render_menu(ctx: RenderContext, data: dict[str, Any]) -> str:
    items = data["items"]
    kinds = [_on_demand(ctx, code) for code in items]
    headed = any(kinds)  # monthly only: the one header, as always
    lines = [ctx.t("header_mixed" if headed else "header")]
    current: bool | None = None
    for n, (code, od) in enumerate(zip(items, kinds), start=1):
        if headed and od is not current:
            lines.append(ctx.t("ondemand_heading" if od else "monthly_heading"))
            current = od
        lines.append(ctx.t("item", n=n, name=ctx.service_name(code), price=ctx.price(code)))
    if data.get("truncated"):
        lines.append(ctx.t("truncated", shown=len(data["items"]), total=data["total"]))
    hours = ctx.settings.menu.validity_seconds / 3600
    lines.append(ctx.t("footer_one" if len(items) == 1 else "footer", hours=f"{hours:g}"))
    return "\n".join(lines)


def render_invalid(ctx: RenderContext, data: dict[str, Any]) -> str:
    """The valid range of the open menu; a menu of one item asks for 1 (no "1 to 1")."""
    n = int(data["n"])
    return ctx.t("invalid_one", n=n) if n == 1 else ctx.t("invalid", n=n)


def render_cancelled(ctx: RenderContext, data: dict[str, Any]) -> str:
    lines = [ctx.t("cancelled_item", name=ctx.service_name(c)) for c in data.get("cancelled") or []]
    lines += [ctx.t("already_item", name=ctx.service_name(c)) for c in data.get("already") or []]
    footer = ctx.t("cancelled_footer")
    if footer and data.get("cancelled"):
        lines.append(footer)
    return "\n".join(lines)
