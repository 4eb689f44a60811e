"""Help: ``HELP``/``帮助``/``?`` and every text nothing else claims get the list of this short code's commands.

The ``help`` and ``reply`` handlers are core (``smsbot/lua/reply.lua``: a text no command and no
open conversation claims is answered with ``help``); this package owns the keywords, the ``help``
renderer and its header and footer. Each enabled command contributes its line (its
``help_template``), in the short code's order.
"""

from __future__ import annotations

from typing import Any

from smsbot.config import Settings
from smsbot.command import Command, Intent, Renderer, RenderContext

HELP_KEYWORDS = frozenset({"HELP", "帮助", "?", "INFO"})


class HelpCommand(Command):
    name = "help"
    legacy_names = {"help_header": "help.header", "help_footer": "help.footer"}

    _intent = Intent("help", "help")

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:
        if norm in HELP_KEYWORDS:
            return self._intent
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {"help": render_help}


def render_help(ctx: RenderContext, data: dict[str, Any]) -> str:
    lines = [ctx.t("header", short_code=ctx.short_code)]
    commands = ctx.commands
    for cmd in commands:
        if cmd.help_template:
            lines.append(ctx.t(f"{cmd.name}.{cmd.help_template}"))
    footer = ctx.t("footer")
    if footer:
        lines.append(footer)
    return "\n".join(lines)
