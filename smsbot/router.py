"""Routing: text sent to a short code -> the `Intent` of the command that takes it, in the short
code's configured order; text no command owns becomes a ``reply`` intent, which the Lua side hands
to the subscriber's open conversation (a 0000 menu, ...) or answers with help. Whether a bare
number cancels something depends on state, so that decision is made in Redis, not here. The way
back (a stored reply intent -> its text) is `smsbot.replies`', built beside the router for the
same configuration (`replies`), so the outbox never comes back here.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from smsbot.command import Command, Intent
from smsbot.config import Language, Settings
from smsbot.replies import Replies
from smsbot.text import normalize, parse_numbers

NORMALIZE_CACHE_SIZE = 4096
_DEFAULT_LANGUAGE = Language.ZH_CN.value  # an Enum member's value costs ~0.2 µs to read: once per MO adds up


class Router:
    """Text -> Intent for one configuration; `replies` renders for the same configuration."""

    def __init__(self, settings: Settings, commands: list[Command], aliases: Mapping[str, str] | None = None):
        self.settings = settings
        self.commands = {c.name: c for c in commands}
        by_any = dict(self.commands)
        for c in commands:
            for a in c.aliases:
                by_any.setdefault(a, c)
        self.replies = Replies(settings, commands, aliases)
        self._per_code: dict[str, list[Command]] = {
            sc.code: [by_any[n] for n in sc.commands] for sc in settings.short_codes
        }
        self._lang = {sc.code: sc.language.value for sc in settings.short_codes}
        self._normalized: dict[str, str] = {}

    def serves(self, short_code: str) -> bool:
        return short_code in self._per_code

    def language(self, short_code: str) -> str:
        return self._lang.get(short_code, _DEFAULT_LANGUAGE)

    def commands_for(self, short_code: str) -> list[Command]:
        return self._per_code.get(short_code, [])

    def route(self, short_code: str, text: str, now_ms: int | None = None) -> Intent:
        """The intent of `text` sent to `short_code` at `now_ms` (default: now)."""
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        norm = self._normalized.get(text)
        if norm is None:
            norm = normalize(text)
            if len(text) <= 32:  # keywords and numbers repeat: remember them (bounded)
                if len(self._normalized) >= NORMALIZE_CACHE_SIZE:
                    self._normalized.clear()
                self._normalized[text] = norm
        for cmd in self._per_code.get(short_code, ()):
            intent = cmd.match(norm, text, self.settings, now_ms)
            if intent is not None:
                return intent
        numbers = parse_numbers(norm)
        args: dict[str, Any] = {"text": norm[:160]}
        if numbers is not None:
            args["numbers"] = numbers
        return Intent("reply", "reply", args)

    def render(self, tpl: str, data: dict[str, Any], lang: str, short_code: str) -> str:
        """A reply's text (`Replies.render`): the API checks a notice with it before storing it."""
        return self.replies.render(tpl, data, lang, short_code)
