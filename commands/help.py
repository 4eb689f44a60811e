"""Help: ``HELP``/``帮助``/``?`` and every text nothing else claims get the list of this short code's commands."""

from __future__ import annotations

from typing import Any

from smsbot.config import Settings
from smsbot.router import Command, Intent, Renderer, RenderContext

HELP_KEYWORDS = frozenset({"HELP", "帮助", "?", "INFO"})


class HelpCommand(Command):
    name = "help"
    lua_file = None  # 'help' and 'reply' handlers are core (smsbot/lua/reply.lua)

    def match(self, norm: str, settings: Settings) -> Intent | None:
        if norm in HELP_KEYWORDS:
            return Intent("help", self.name)
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {"help": render_help}


def render_help(ctx: RenderContext, data: dict[str, Any]) -> str:
    from commands import all_commands

    enabled = {sc.code: sc.commands for sc in ctx.settings.short_codes}.get(ctx.short_code, [])
    by_name = {c.name: c for c in all_commands()}
    lines = [ctx.t("help_header", short_code=ctx.short_code)]
    for name in enabled:
        cmd = by_name.get(name)
        if cmd is not None and cmd.help_template:
            lines.append(ctx.t(cmd.help_template))
    footer = ctx.t("help_footer")
    if footer:
        lines.append(footer)
    return "\n".join(lines)
