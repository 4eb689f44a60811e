"""Routing text to an intent, and the contract every command module fulfils.

A command module (in the top-level `commands` package) is three small pieces:

* a **matcher**: normalised text -> `Intent` (pure Python, no I/O), for the keywords it owns;
* a **Lua fragment**: handlers that read and change that subscriber's state atomically in Redis
  and queue reply intents on the outbox (see ``smsbot/lua/prelude.lua``);
* **renderers**: reply intent (template name + data) -> text, from the templates of a language.

`Router` asks each command enabled on the short code, in the configured order, whether it owns
the text; text no command owns becomes a ``reply`` intent, which the Lua side hands to the
subscriber's open conversation (a 0000 menu, ...) or answers with help. Whether a bare number
cancels something depends on state, so that decision is made in Redis, not here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from smsbot.config import Language, Settings

_SPACES = re.compile(r"\s+")
_NUMBER_SEPARATORS = re.compile(r"[\s,，、;；/.。]+")
_MAX_NUMBERS = 50
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
RENDER_CACHE_SIZE = 4096
NORMALIZE_CACHE_SIZE = 4096


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII), trimmed, inner spaces collapsed, upper case."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().upper()


def parse_numbers(norm: str) -> list[int] | None:
    """``'1 3'``, ``'1,3'``, ``'1，3'``, ``'１'`` -> [1, 3]; anything else -> None."""
    tokens = [t for t in _NUMBER_SEPARATORS.split(norm) if t]
    if not tokens or len(tokens) > _MAX_NUMBERS:
        return None
    if not all(t.isascii() and t.isdigit() and len(t) <= 4 for t in tokens):
        return None
    return [int(t) for t in tokens]


@dataclass(frozen=True, slots=True)
class Intent:
    """What an MO asks for: the Lua handler to run, the command it belongs to, its arguments, and the
    names of extra per-subscriber keys the handler uses (``Keys.named``; ``ctx.key.<name>`` in Lua)."""

    handler: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()


class Templates:
    """Reply templates per language: packaged YAML, overridden by ``templates:`` in config."""

    def __init__(self, overrides: dict[str, dict[str, str]] | None = None):
        self._by_lang: dict[str, dict[str, str]] = {}
        for lang in Language:
            path = TEMPLATE_DIR / f"{lang.value}.yaml"
            base = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            base.update((overrides or {}).get(lang.value, {}))
            self._by_lang[lang.value] = base

    def get(self, lang: str, key: str) -> str:
        table = self._by_lang.get(lang) or self._by_lang[Language.ZH_CN.value]
        if key in table:
            return table[key]
        return self._by_lang[Language.ZH_CN.value][key]

    def render(self, lang: str, key: str, **values: Any) -> str:
        return self.get(lang, key).format(**values)

    def add_defaults(self, lang: str, entries: dict[str, str]) -> None:
        """Command modules may ship templates of their own; config overrides still win."""
        table = self._by_lang.setdefault(lang, {})
        for k, v in entries.items():
            table.setdefault(k, v)


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a renderer may use: the reply depends on (template, data, language, short code) only,
    so `Router.render_text` can cache it."""

    settings: Settings
    templates: Templates
    lang: str
    short_code: str
    catalogue: dict[tuple[str, str], tuple[str, str]]  # (lang, code) -> (display name, price text)

    def t(self, key: str, **values: Any) -> str:
        return self.templates.render(self.lang, key, **values)

    def service_name(self, code: str) -> str:
        entry = self.catalogue.get((self.lang, code))
        return entry[0] if entry else code

    def price(self, code: str) -> str:
        entry = self.catalogue.get((self.lang, code))
        return entry[1] if entry else ""


Renderer = Callable[[RenderContext, dict[str, Any]], str]


class Command:
    """Base of a command module's command. Subclasses set the class attributes and override `match`."""

    name: str = ""
    lua_file: Path | None = None
    help_template: str | None = None  # template key of this command's line in the help reply

    def match(self, norm: str, settings: Settings) -> Intent | None:  # pragma: no cover - interface
        return None

    def renderers(self) -> dict[str, Renderer]:
        return {}

    def event_sources(self, settings: Settings, store: Any) -> list[Any]:
        """Inbound event streams this command consumes (`smsbot.events.EventSource`); the bot runs
        one consumer thread per source when the command is enabled on any short code."""
        return []


class Router:
    """Text -> Intent for one configuration; tpl -> renderer for the outbox sender."""

    def __init__(self, settings: Settings, commands: list[Command]):
        self.settings = settings
        self.commands = {c.name: c for c in commands}
        self.templates = Templates(settings.templates)
        self._per_code: dict[str, list[Command]] = {
            sc.code: [self.commands[n] for n in sc.commands] for sc in settings.short_codes
        }
        self._lang = {sc.code: sc.language.value for sc in settings.short_codes}
        self._renderers: dict[str, Renderer] = {}
        for c in commands:
            self._renderers.update(c.renderers())
        self._catalogue = self._build_catalogue()
        self._render_cache: dict[tuple[str, str, str, str], str] = {}
        self._normalized: dict[str, str] = {}

    def serves(self, short_code: str) -> bool:
        return short_code in self._per_code

    def language(self, short_code: str) -> str:
        return self._lang.get(short_code, Language.ZH_CN.value)

    def commands_for(self, short_code: str) -> list[Command]:
        return self._per_code.get(short_code, [])

    def route(self, short_code: str, text: str) -> Intent:
        norm = self._normalized.get(text)
        if norm is None:
            norm = normalize(text)
            if len(text) <= 32:  # keywords and numbers repeat: remember them (bounded)
                if len(self._normalized) >= NORMALIZE_CACHE_SIZE:
                    self._normalized.clear()
                self._normalized[text] = norm
        for cmd in self._per_code.get(short_code, ()):
            intent = cmd.match(norm, self.settings)
            if intent is not None:
                return intent
        numbers = parse_numbers(norm)
        args: dict[str, Any] = {"text": norm[:160]}
        if numbers is not None:
            args["numbers"] = numbers
        return Intent("reply", "reply", args)

    def render(self, tpl: str, data: dict[str, Any], lang: str, short_code: str) -> str:
        fn = self._renderers.get(tpl)
        ctx = RenderContext(self.settings, self.templates, lang, short_code, self._catalogue)
        if fn is None:
            return ctx.t(tpl, **data)
        return fn(ctx, data)

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
        from smsbot.config import BillingKind

        out: dict[tuple[str, str], tuple[str, str]] = {}
        for lang in Language:
            for svc in self.settings.services:
                name = svc.name_en if lang is Language.EN and svc.name_en else svc.name
                yuan = f"{svc.price_fen / 100:.2f}".rstrip("0").rstrip(".")
                key = "price_on_demand" if svc.kind is BillingKind.ON_DEMAND else "price"
                out[(lang.value, svc.code)] = (name, self.templates.render(lang.value, key, yuan=yuan))
        return out
