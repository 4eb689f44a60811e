"""Routing text to an intent, the contract every command package fulfils, and the registry checks.

A command is one package ``commands/<name>/`` (listed in ``commands/__init__.py``):

* a **matcher**: ``match(norm, raw, settings) -> Intent | None`` (pure Python, no I/O) for the
  keywords it owns; `norm` is the normalised text (NFKC, upper case, spaces collapsed), `raw` the
  text exactly as the subscriber typed it (for commands that keep the subscriber's own words);
* a **Lua fragment** ``<name>.lua``: handlers that read and change that subscriber's state
  atomically in Redis and queue reply intents (see ``smsbot/lua/prelude.lua``); a command may put
  shared Lua before it (``lua_libraries``, e.g. the billing rules);
* **templates** ``templates/<language>.yaml`` (keys local to the package) and **renderers**
  (reply intent -> text);
* optionally its own **settings** (config ``commands.<name>``, validated by `settings_model` when
  the registry loads it), **extra keys** (``Intent.keys``: per-subscriber ``name`` or per-shard
  ``@name``, both with the subscriber's hash tag; see `smsbot.keys.Keys.named`), **event streams**
  and **metrics**.

Names are qualified by the command: handlers, conversations, renderers and templates of command
``x`` are ``x`` or ``x.<something>`` (templates are written locally in the package's YAML and
qualified when loaded), so two packages cannot clash; `Registry` refuses a collision or an
unprefixed name when the bot starts.

`Router` asks each command enabled on the short code, in the configured order, whether it owns
the text; text no command owns becomes a ``reply`` intent, which the Lua side hands to the
subscriber's open conversation (a 0000 menu, ...) or answers with help. Whether a bare number
cancels something depends on state, so that decision is made in Redis, not here.
"""

from __future__ import annotations

import json
import re
import time
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping

import yaml

from smsbot.config import ConfigError, Language, Settings

_SPACES = re.compile(r"\s+")
_NUMBER_SEPARATORS = re.compile(r"[\s,，、;；/.。]+")
_MAX_NUMBERS = 50
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"  # the router's own (core) templates
RENDER_CACHE_SIZE = 4096
NORMALIZE_CACHE_SIZE = 4096

# Core names (smsbot/lua/reply.lua, lua/reassembly.lua, the catalogue): no command may use them.
CORE_HANDLERS = frozenset({"reply", "help", "part"})
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9]{0,23}$")


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


_ARG_SEPARATORS = " \t\r\n:：,，、;；-—"


def after_keyword(raw: str, keyword: str) -> str | None:
    """The subscriber's own text after a leading `keyword`, exactly as typed (case, width, emoji,
    punctuation kept), without the separators between the two (spaces, ``:``, ``：``, ``,`` ...);
    None when `raw` does not begin with the keyword. The keyword is compared like `normalize`
    compares (``ｔｓ 网速慢`` and ``Ts:网速慢`` both begin with ``TS``)."""
    i, n = 0, len(raw)
    while i < n and raw[i].isspace():
        i += 1
    want = keyword.upper()
    got = ""
    while i < n and len(got) < len(want):
        got += unicodedata.normalize("NFKC", raw[i]).upper()
        i += 1
        if not want.startswith(got):
            return None
    if got != want:
        return None
    while i < n and (raw[i].isspace() or raw[i] in _ARG_SEPARATORS):
        i += 1
    return raw[i:].rstrip()


@dataclass(frozen=True, slots=True)
class Intent:
    """What an MO asks for: the Lua handler to run, the command it belongs to, its arguments, and the
    names of extra keys the handler uses (``Keys.named``; ``ctx.key.<name>`` in Lua): ``name`` is the
    subscriber's own key ``<tag>:<name>:<msisdn>``, ``@name`` a key of the subscriber's shard
    ``<tag>:<name>`` (same hash tag, so one slot)."""

    handler: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] = ()


class Templates:
    """Reply templates per language: the core ones (``smsbot/templates``), each command package's
    (qualified ``<command>.<key>``), overridden by ``templates:`` in config. A key missing in a
    language falls back to zh-CN."""

    def __init__(self, overrides: dict[str, dict[str, str]] | None = None, packaged: Iterable[Mapping[str, Mapping[str, str]]] = ()):
        self._by_lang: dict[str, dict[str, str]] = {}
        for lang in Language:
            path = TEMPLATE_DIR / f"{lang.value}.yaml"
            self._by_lang[lang.value] = dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        for per_lang in packaged:
            for lang, entries in per_lang.items():
                self._by_lang.setdefault(lang, {}).update(entries)
        for lang, entries in (overrides or {}).items():
            self._by_lang.setdefault(lang, {}).update(entries)

    def get(self, lang: str, key: str) -> str:
        table = self._by_lang.get(lang) or self._by_lang[Language.ZH_CN.value]
        if key in table:
            return table[key]
        return self._by_lang[Language.ZH_CN.value][key]

    def has(self, key: str) -> bool:
        return key in self._by_lang[Language.ZH_CN.value]

    def render(self, lang: str, key: str, **values: Any) -> str:
        return self.get(lang, key).format(**values)

    def keys(self, lang: str = Language.ZH_CN.value) -> set[str]:
        return set(self._by_lang.get(lang, {}))


def check_templates(settings: Settings, registry: Registry) -> list[tuple[str, str]]:
    """Problems with the reply templates, as ``(key, problem)``: part of every configuration load
    (the command registry's check, `commands`), so `smsbot run`, a reload (SIGHUP) and `config
    check` all refuse them.

    Checked: every ``templates.<lang>.<name>`` override names a language smsbot speaks and a
    template that exists (the core's or any command package's; former names were already rewritten
    by the configuration's migration); every template, packaged or configured, is a valid format
    string and its fixed text alone (the text with its ``{placeholders}`` removed) fits in 255 SMS
    parts, so a text that could never be sent is refused before the bot starts. The packaged
    templates are checked once per process (`_packaged_templates`), the overrides at every load.

    Not checked: the size of a rendered reply, which depends on the values put into the
    placeholders (service names, lists of orders, a subscriber's own words): a reply that grows
    past 255 parts at run time is still refused when it is sent; nor whether an override uses the
    same placeholders as the template it replaces."""
    known, problems = _packaged_templates(tuple(registry.classes))
    problems = list(problems)
    langs = [lang.value for lang in Language]
    for lang, entries in settings.templates.items():
        if lang not in langs:
            problems.append((f"templates.{lang}", f"unknown language {lang!r}; known: {', '.join(langs)}"))
            continue
        for name, text in entries.items():
            key = f"templates.{lang}.{name}"
            if name not in known:
                import difflib

                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known names start with a command: {', '.join(sorted({k.split('.')[0] + '.' for k in known if '.' in k}))}"
                problems.append((key, f"unknown template {name!r}; {hint}"))
                continue
            problem = _template_problem(str(text))
            if problem:
                problems.append((key, problem))
    return problems


@lru_cache(maxsize=8)
def _packaged_templates(classes: tuple[type[Command], ...]) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
    """(every template name, problems of the packaged templates) of a command list."""
    packaged = Templates(None, [cls.package_templates() for cls in classes])
    known = frozenset().union(*(packaged.keys(lang.value) for lang in Language))
    problems = []
    for lang in Language:
        for name in sorted(packaged.keys(lang.value)):
            problem = _template_problem(str(packaged.get(lang.value, name)))
            if problem:
                problems.append((f"template {name} ({lang.value}, packaged)", problem))
    return known, tuple(problems)


def _template_problem(text: str) -> str | None:
    """Why `text` cannot be a template, or None."""
    import string

    from smsbot.codec import segment_text

    try:
        fixed = "".join(literal for literal, *_ in string.Formatter().parse(text))
    except ValueError as e:
        return f"not a valid template: {e} (write {{{{ and }}}} for literal braces)"
    try:
        segment_text(fixed)
    except ValueError as e:
        return f"too long to send even with empty placeholders: {e}"
    return None


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a renderer may use: the reply depends on (template, data, language, short code) only,
    so `Router.render_text` can cache it. `t` takes the command's local template names
    (``header`` in the subscriptions package is ``subscriptions.header``) or qualified ones."""

    settings: Settings
    templates: Templates
    lang: str
    short_code: str
    catalogue: dict[tuple[str, str], tuple[str, str]]  # (lang, code) -> (display name, price text)
    ns: str = ""  # the command whose renderer runs: local template names are looked up under it
    router: "Router | None" = None

    def t(self, key: str, **values: Any) -> str:
        if self.ns and "." not in key:
            key = f"{self.ns}.{key}"
        return self.templates.render(self.lang, key, **values)

    def service_name(self, code: str) -> str:
        entry = self.catalogue.get((self.lang, code))
        return entry[0] if entry else code

    def price(self, code: str) -> str:
        entry = self.catalogue.get((self.lang, code))
        return entry[1] if entry else ""


Renderer = Callable[[RenderContext, dict[str, Any]], str]


class Command:
    """Base of a command package's command. Subclasses set the class attributes and override `match`.

    The package directory holds ``<name>.lua`` (optional) and ``templates/<language>.yaml``."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()  # former names, still accepted in a short code's list (config check notes it)
    help_template: ClassVar[str | None] = None  # local template key of this command's line in the help reply
    lua_libraries: ClassVar[tuple[Path, ...]] = ()  # Lua placed before this package's fragment (shared rules)
    legacy_conversations: ClassVar[tuple[str, ...]] = ()  # conversation types stored before names were prefixed
    legacy_names: ClassVar[Mapping[str, str]] = {}  # pre-package template/renderer name -> qualified name
    settings_model: ClassVar[Any] = None  # pydantic model of config ``commands.<name>`` (None: takes no settings)

    _options: tuple[Any, Any] | None = None  # (settings object, validated options) of the last lookup

    @classmethod
    def package_dir(cls) -> Path:
        module = sys.modules[cls.__module__]
        return Path(module.__file__ or ".").resolve().parent  # type: ignore[arg-type]

    @classmethod
    def lua_path(cls) -> Path | None:
        path = cls.package_dir() / f"{cls.name}.lua"
        return path if path.exists() else None

    @classmethod
    def lua_source(cls) -> str | None:
        """The fragment the store assembles (libraries first), or None for a command without Lua."""
        own = cls.lua_path()
        if own is None:
            return None
        parts = [Path(p).read_text(encoding="utf-8") for p in cls.lua_libraries]
        parts.append(own.read_text(encoding="utf-8"))
        return "\n".join(parts)

    @classmethod
    def package_templates(cls) -> dict[str, dict[str, str]]:
        """``templates/<lang>.yaml`` of the package, keys qualified ``<name>.<key>``."""
        out: dict[str, dict[str, str]] = {}
        tdir = cls.package_dir() / "templates"
        for lang in Language:
            path = tdir / f"{lang.value}.yaml"
            if path.exists():
                local = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                out[lang.value] = {f"{cls.name}.{k}": str(v) for k, v in local.items()}
        return out

    def options(self, settings: Settings) -> Any:
        """This command's validated settings (config ``commands.<name>``; defaults when absent)."""
        cached = self._options
        if cached is not None and cached[0] is settings:
            return cached[1]
        if self.settings_model is None:
            return None
        opts = self.settings_model.model_validate(settings.commands.get(self.name) or {})
        self._options = (settings, opts)
        return opts

    def match(self, norm: str, raw: str, settings: Settings, now_ms: int) -> Intent | None:  # pragma: no cover - interface
        """The intent of a text this command takes (None: not ours). `norm`: normalised, `raw`: as
        typed; `now_ms`: the time the MO is handled at (its script's ``ctx.now``). No I/O."""
        return None

    def renderers(self) -> dict[str, Renderer]:
        """Qualified renderer names (as the Lua fragment writes them in ``reply``) -> function."""
        return {}

    def event_sources(self, settings: Settings, store: Any) -> list[Any]:
        """Inbound event streams this command consumes (`smsbot.events.EventSource`); the bot runs
        one consumer thread per source when the command is enabled on any short code."""
        return []

    def refresh_metrics(self, metrics: Any, store: Any, settings: Settings) -> None:
        """Set this command's gauges before a metrics scrape (enabled commands only)."""

    def api_routes(self, ctx: Any) -> Any:
        """HTTP API endpoints this command brings (a FastAPI ``APIRouter``; `smsbot.api` mounts it;
        `ctx` is its `ApiContext`: settings, store, auth), or None."""
        return None


# -- the registry checks --------------------------------------------------------------------------
_LUA_HANDLER = re.compile(r"""^\s*handlers\[\s*['"]([^'"]+)['"]\s*\]\s*=""", re.M)
_LUA_CONVERSATION = re.compile(r"""^\s*conversations\[\s*['"]([^'"]+)['"]\s*\]\s*=""", re.M)
_LUA_REPLY = re.compile(r"""\breply(?:_encoded)?\(\s*['"]([^'"]+)['"]""")


def owned(name: str, command: str) -> bool:
    """Is `name` in `command`'s namespace (``command`` or ``command.<x>``)?"""
    return name == command or name.startswith(command + ".")


class Registry:
    """The command list, checked: names, aliases, and that every handler, conversation, renderer
    and template name is prefixed by its command and defined once (core names included).

    `fragments` are Lua sources that belong to the core but not to a command (the billing steps),
    as ``(namespace, source)``."""

    def __init__(self, classes: Iterable[type[Command]], fragments: Iterable[tuple[str, str]] = ()):
        self.classes = list(classes)
        self.fragments = list(fragments)
        self.by_name: dict[str, type[Command]] = {}
        self.alias_of: dict[str, str] = {}
        problems = self._check()
        if problems:
            raise ConfigError([("commands (registry)", p) for p in problems], "commands/__init__.py")

    def resolve(self, name: str) -> str | None:
        """A short code's command name (or a former name) -> the command's name, None if unknown."""
        if name in self.by_name:
            return name
        return self.alias_of.get(name)

    def instances(self) -> list[Command]:
        return [cls() for cls in self.classes]

    def lua_sources(self) -> list[str]:
        out = [src for _ns, src in self.fragments]
        for cls in self.classes:
            src = cls.lua_source()
            if src is not None:
                out.append(src)
        return out

    def legacy_names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for cls in self.classes:
            out.update(cls.legacy_names)
        return out

    def _check(self) -> list[str]:
        problems: list[str] = []
        handlers: dict[str, str] = {h: "core" for h in CORE_HANDLERS}
        conversations: dict[str, str] = {}
        renderers: dict[str, str] = {}
        core_templates = set(Templates().keys())
        templates: dict[str, str] = {k: "core" for k in core_templates}
        legacy: dict[str, str] = {}

        def claim(table: dict[str, str], kind: str, name: str, who: str, prefix: str | None) -> None:
            if prefix is not None and not owned(name, prefix):
                problems.append(f"{kind} {name!r} of {who} is not prefixed by {prefix!r} ({prefix!r} or '{prefix}.<name>')")
            if name in table and table[name] != who:
                problems.append(f"{kind} {name!r} is defined by both {table[name]} and {who}")
            table[name] = who

        for ns, src in self.fragments:
            for h in _LUA_HANDLER.findall(src):
                claim(handlers, "handler", h, f"core {ns}", ns)
        for cls in self.classes:
            name = cls.name
            who = f"command {name!r} ({cls.__module__})"
            if not COMMAND_NAME.match(name or ""):
                problems.append(f"{who}: the name must be lower-case letters and digits (it prefixes every name of the command)")
                continue
            for n in (name, *cls.aliases):
                if n in self.by_name or n in self.alias_of:
                    problems.append(f"command name {n!r} is used twice ({who})")
            self.by_name[name] = cls
            for a in cls.aliases:
                self.alias_of[a] = name
            own = cls.lua_path()
            own_src = own.read_text(encoding="utf-8") if own else ""
            lib_src = "\n".join(Path(p).read_text(encoding="utf-8") for p in cls.lua_libraries)
            for h in _LUA_HANDLER.findall(own_src):
                claim(handlers, "handler", h, who, name)
            for h in _LUA_HANDLER.findall(lib_src):  # a library's handlers belong to its core namespace
                if h not in handlers:
                    problems.append(f"handler {h!r} of a Lua library used by {who} is not registered by the core")
            for c in _LUA_CONVERSATION.findall(own_src):
                claim(conversations, "conversation", c, who, None if c in cls.legacy_conversations else name)
            for r in cls().renderers():
                claim(renderers, "renderer", r, who, name)
            per_lang = cls.package_templates()
            if Language.ZH_CN.value not in per_lang and (per_lang or own_src):
                problems.append(f"{who}: templates/zh-CN.yaml is missing (zh-CN is every language's fallback)")
            for lang_entries in per_lang.values():
                for t in lang_entries:
                    claim(templates, "template", t, who, name)
            if cls.help_template and f"{name}.{cls.help_template}" not in per_lang.get(Language.ZH_CN.value, {}):
                problems.append(f"{who}: help template {cls.help_template!r} is not in its templates")
            for old, new in cls.legacy_names.items():
                if old in legacy and legacy[old] != new:
                    problems.append(f"legacy name {old!r} is claimed by two commands")
                legacy[old] = new
            # every reply the fragment writes must be renderable
            zh = per_lang.get(Language.ZH_CN.value, {})
            for tpl in _LUA_REPLY.findall(own_src):
                if tpl not in zh and tpl not in core_templates and tpl not in renderers:
                    problems.append(f"{who}: its Lua replies with {tpl!r}, which is neither a template nor a renderer")
        for old, new in legacy.items():
            if old in renderers or old in templates:
                problems.append(f"legacy name {old!r} is also a current name")
        return problems


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
        return fn(RenderContext(self.settings, self.templates, lang, short_code, self._catalogue, ns, self), data)

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
