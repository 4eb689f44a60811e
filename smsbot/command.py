"""The contract every command package fulfils (`Command`), what its matcher returns (`Intent`) and
what its renderers get (`RenderContext`).

A command is one package ``commands/<name>/`` (listed in ``commands/__init__.py``):

* a **matcher**: ``match(norm, raw, settings, now_ms) -> Intent | None`` (pure Python, no I/O, no
  clock but `now_ms`) for the keywords it owns; `norm` is the normalised text (`smsbot.text`), `raw`
  the text exactly as the subscriber typed it (for commands that keep the subscriber's own words);
* a **Lua fragment** ``<name>.lua``: handlers that read and change that subscriber's state
  atomically in Redis and queue reply intents (see ``smsbot/lua/prelude.lua``); a command may put
  shared Lua before it (``lua_libraries``, e.g. the billing rules);
* **templates** ``templates/<language>.yaml`` (keys local to the package) and **renderers**
  (reply intent -> text);
* optionally its own **settings** (config ``commands.<name>``, validated by `settings_model` when
  the registry loads it), **extra keys** (``Intent.keys``: per-subscriber ``name`` or per-shard
  ``@name``, both with the subscriber's hash tag; see `smsbot.keys.Keys.named`), **event streams**,
  **metrics**, **HTTP endpoints** (``api.py``), **CLI commands** (``cli.py``) and Redis **steps** of
  its own beside the MO handlers (declared like `smsbot.steps`', run by `Store.run_step`).

Names are qualified by the command (`smsbot.registry` checks them when the bot starts).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import yaml

from smsbot.config import Language, Settings
from smsbot.reply_templates import Templates
from smsbot.steps import Step


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



@dataclass(frozen=True, slots=True)
class RenderContext:
    """What a renderer may use: the reply depends on (template, data, language, short code) only,
    so `Replies.render_text` can cache it. `t` takes the command's local template names
    (``header`` in the subscriptions package is ``subscriptions.header``) or qualified ones."""

    settings: Settings
    templates: Templates
    lang: str
    short_code: str
    catalogue: dict[tuple[str, str], tuple[str, str]]  # (lang, code) -> (display name, price text)
    ns: str = ""  # the command whose renderer runs: local template names are looked up under it
    commands: Sequence["Command"] = ()  # the commands enabled on this short code, in order (the help reply lists them)

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


def configured_short_code(value: str | None, info: Any) -> str | None:
    """A short code a command's settings name (None: none), refused unless configured: the registry
    validates a command's settings with the whole `Settings` as the context (``info.context``)."""
    settings = (info.context or {}).get("settings")
    if value is not None and settings is not None and settings.short_code(value) is None:
        raise ValueError(f"{value!r} is not a configured short code")
    return value


class OwnSettings:
    """A command's own settings, config ``commands.<name>`` of a `Settings`, validated by `model`
    (defaults when absent; checked when the configuration was loaded, so this does not fail for
    loaded settings). The settings last asked about are kept: a reload makes new ones."""

    def __init__(self, name: str, model: Any):
        self.name, self.model = name, model
        self._last: tuple[Settings, Any] | None = None

    def __call__(self, settings: Settings) -> Any:
        last = self._last
        if last is not None and last[0] is settings:
            return last[1]
        opts = self.model.model_validate(settings.commands.get(self.name) or {})
        self._last = (settings, opts)
        return opts


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
    # where its settings were before they were its own: former dotted key -> key under ``commands.<name>``
    # ('' = the whole section); still accepted (and ``SMSBOT_<SECTION>_<KEY>``), each noted by `config check`
    former_settings: ClassVar[Mapping[str, str]] = {}
    steps: ClassVar[tuple[Step, ...]] = ()  # its own Redis steps beside the MO handlers (its HTTP endpoints')

    _own: OwnSettings | None = None  # reads `settings_model` (made on first use)

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
        if self.settings_model is None:
            return None
        if self._own is None:
            self._own = OwnSettings(self.name, self.settings_model)
        return self._own(settings)

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

    def cli_commands(self, cli: Any) -> list[Any]:
        """``smsbot`` subcommands this command brings (click commands; `smsbot.cli` adds them to its
        group). `cli` is `smsbot.cli.group`: `pass_ctx`, `Ctx`, `msisdn_or_exit`, `service_or_exit`,
        `open_store`, `time_zone`. Every command package's are added, enabled on a short code or not."""
        return []
