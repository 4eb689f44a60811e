"""Replies: a stored reply intent (template, data, language, short code) -> its text.

A command's renderer when it has one for the template, else the template itself; with the service
catalogue (names, prices) per language. Built from the settings, the commands and their reply
templates (`smsbot.reply_templates`), for the outbox end of the path (`smsbot.outbox`), so the
router (`smsbot.router`) is asked only once per MO, at dispatch.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from smsbot.command import Command, RenderContext, Renderer
from smsbot.config import BillingKind, Language, Settings
from smsbot.reply_templates import Templates

RENDER_CACHE_SIZE = 4096


class Replies:
    """tpl + data -> text for one configuration (a reload builds another)."""

    def __init__(self, settings: Settings, commands: Sequence[Command], aliases: Mapping[str, str] | None = None):
        self.settings = settings
        self.templates = Templates(settings.templates, [c.package_templates() for c in commands])
        by_any: dict[str, Command] = {c.name: c for c in commands}
        for c in commands:
            for a in c.aliases:
                by_any.setdefault(a, c)
        self._per_code: dict[str, list[Command]] = {
            sc.code: [by_any[n] for n in sc.commands] for sc in settings.short_codes
        }
        self._renderers: dict[str, tuple[Renderer, str]] = {}
        self._legacy: dict[str, str] = dict(aliases or {})
        for c in commands:
            for name, fn in c.renderers().items():
                self._renderers[name] = (fn, c.name)
            self._legacy.update(c.legacy_names)
        self.catalogue = self._build_catalogue()
        self._render_cache: dict[tuple[str, str, str, str], str] = {}

    def render(self, tpl: str, data: dict[str, Any], lang: str, short_code: str) -> str:
        tpl = self._legacy.get(tpl, tpl)  # an intent queued by a version before the packages
        hit = self._renderers.get(tpl)
        if hit is None:
            return self.templates.render(lang, tpl, **data)
        fn, ns = hit
        return fn(RenderContext(self.settings, self.templates, lang, short_code, self.catalogue, ns,
                                self._per_code.get(short_code, [])), data)

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
