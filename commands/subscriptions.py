"""0000: list the subscriber's monthly services as a numbered menu; numbers reply to cancel.

Matching: ``0000`` and ``00000`` (full-width too, via normalisation). The atomic steps live in
``subscriptions.lua``: ``menu`` opens the menu conversation, ``conversations.menu`` handles a
numeric reply while it is open. This module renders their replies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smsbot.config import Settings
from smsbot.router import Command, Intent, Renderer, RenderContext

MENU_KEYWORDS = frozenset({"0000", "00000"})


class SubscriptionsCommand(Command):
    name = "subscriptions"
    lua_file = Path(__file__).with_suffix(".lua")
    help_template = "cmd_subscriptions"

    def match(self, norm: str, settings: Settings) -> Intent | None:
        if norm in MENU_KEYWORDS:
            m = settings.menu
            cached = self._intent
            if cached is None or cached[0] is not m:
                args = {"validity_ms": m.validity_seconds * 1000, "keep_ms": m.expired_notice_seconds * 1000, "max_items": m.max_items}
                cached = self._intent = (m, Intent("menu", self.name, args))
            return cached[1]
        return None

    _intent: tuple[object, Intent] | None = None  # the menu intent for the current menu settings

    def renderers(self) -> dict[str, Renderer]:
        return {
            "menu": render_menu,
            "menu_cancelled": render_cancelled,
            "menu_invalid": lambda ctx, d: ctx.t("menu_invalid", n=d["n"]),
        }


def render_menu(ctx: RenderContext, data: dict[str, Any]) -> str:
    lines = [ctx.t("menu_header")]
    for n, code in enumerate(data["items"], start=1):
        lines.append(ctx.t("menu_item", n=n, name=ctx.service_name(code), price=ctx.price(code)))
    if data.get("truncated"):
        lines.append(ctx.t("menu_truncated", shown=len(data["items"]), total=data["total"]))
    hours = ctx.settings.menu.validity_seconds / 3600
    lines.append(ctx.t("menu_footer", hours=f"{hours:g}"))
    return "\n".join(lines)


def render_cancelled(ctx: RenderContext, data: dict[str, Any]) -> str:
    lines = [ctx.t("menu_cancelled_item", name=ctx.service_name(c)) for c in data.get("cancelled") or []]
    lines += [ctx.t("menu_already_item", name=ctx.service_name(c)) for c in data.get("already") or []]
    footer = ctx.t("menu_cancelled_footer")
    if footer and data.get("cancelled"):
        lines.append(footer)
    return "\n".join(lines)
