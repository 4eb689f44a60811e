"""Routing: text sent to a short code -> the `Intent` of the command that takes it, in the short
code's configured order; text no command owns becomes a ``reply`` intent, which the Lua side hands
to the subscriber's open conversation (a 0000 menu, ...) or answers with help. Whether a bare
number cancels something depends on state, so that decision is made in Redis, not here. And the
way back: a stored reply intent (template, data) -> its text, by the command's renderer or its
template, with the service catalogue (names, prices) per language.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

from smsbot.command import Command, Intent, RenderContext, Renderer
from smsbot.config import BillingKind, Language, Settings
from smsbot.reply_templates import Templates
from smsbot.text import normalize, parse_numbers

RENDER_CACHE_SIZE = 4096
NORMALIZE_CACHE_SIZE = 4096


class Router:
    """Text -> Intent for one configuration; tpl -> renderer for the outbox sender."""

    def __init__(self, settings: Settings, commands: list[Command], aliases: Mapping[str, str] | None = None):
        self.settings = settings
        self.commands = {c.name: c for c in commands}
        by_any = dict(self.commands)
        for c in commands:
            for a in c.aliases:
                by_any.setdefault(a, c)
        self.templates = Templates(settings.templates, [c.package_templates() for c in commands])
        self._per_code: dict[str, list[Command]] = {
            sc.code: [by_any[n] for n in sc.commands] for sc in settings.short_codes
        }
        self._lang = {sc.code: sc.language.value for sc in settings.short_codes}
        self._renderers: dict[str, tuple[Renderer, str]] = {}
        self._legacy: dict[str, str] = dict(aliases or {})
        for c in commands:
            for name, fn in c.renderers().items():
                self._renderers[name] = (fn, c.name)
            self._legacy.update(c.legacy_names)
        self._catalogue = self._build_catalogue()
        self._render_cache: dict[tuple[str, str, str, str], str] = {}
        self._normalized: dict[str, str] = {}

    def serves(self, short_code: str) -> bool:
        return short_code in self._per_code

    def language(self, short_code: str) -> str:
        return self._lang.get(short_code, Language.ZH_CN.value)

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
        tpl = self._legacy.get(tpl, tpl)  # an intent queued by a version before the packages
        hit = self._renderers.get(tpl)
        if hit is None:
            return self.templates.render(lang, tpl, **data)
        fn, ns = hit
        return fn(RenderContext(self.settings, self.templates, lang, short_code, self._catalogue, ns,
                                self.commands_for(short_code)), data)

    def render_text(self, tpl: str, data_json: str, lang: str, short_code: str) -> str:
        """`render` from the JSON the Lua step stored, cached: most replies repeat (help, menus of
        the same services), and rendering is a pure function of these four values."""
        key = (tpl, data_json, lang, short_code)
        text = self._render_cache.get(key)
        if text is None:
            text = self.render(tpl, json.loads(data_json or "{}"), lang, short_code)
            if len(self._render_cache) >= RENDER_CACHE_SIZE:
                self._render_cache.clear()
            self._render_cache[key] = text
        return text

    def _build_catalogue(self) -> dict[tuple[str, str], tuple[str, str]]:
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for lang in Language:
            for svc in self.settings.services:
                name = svc.name_en if lang is Language.EN and svc.name_en else svc.name
                yuan = f"{svc.price_fen / 100:.2f}".rstrip("0").rstrip(".")
                key = "price_on_demand" if svc.kind is BillingKind.ON_DEMAND else "price"
                out[(lang.value, svc.code)] = (name, self.templates.render(lang.value, key, yuan=yuan))
        return out
