"""The command registry: ONE explicit list of command packages. A short code enables commands by name.

To add a command: create the package ``commands/<name>/`` (``__init__.py`` with a `Command`
subclass, optionally ``<name>.lua`` and ``templates/<language>.yaml``; see the README, "Adding a
command") and add its class to `COMMANDS` below. Nothing else changes: the registry checks the
names (every handler, conversation, renderer and template prefixed by the command, none defined
twice), the store assembles its Lua, the router loads its templates, and its settings (config
``commands.<name>``) are validated when the configuration is loaded.

This is the layer that knows the commands: `smsbot.config`, the store, the transport and the
simulator never import a command; the configuration reaches the registry's checks through
`smsbot.config.extend` (installed when this package is imported).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from smsbot import billing, config
from smsbot.command import Command
from smsbot.registry import Registry
from smsbot.reply_templates import check_templates

from commands.bill import BillCommand
from commands.complaints import ComplaintsCommand
from commands.help import HelpCommand
from commands.orders import OrdersCommand
from commands.subscriptions import SubscriptionsCommand
from commands.usage import UsageCommand

COMMANDS: tuple[type[Command], ...] = (
    SubscriptionsCommand,
    UsageCommand,
    OrdersCommand,
    BillCommand,
    ComplaintsCommand,
    HelpCommand,
)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The checked registry (raises `smsbot.config.ConfigError` naming every collision)."""
    return Registry(COMMANDS, fragments=[("billing", billing.lua_fragment())])


def all_commands() -> list[Command]:
    """Fresh instances of every command (a router holds its own: commands cache per settings)."""
    return registry().instances()


def lua_sources() -> list[str]:
    """Every Lua fragment the store assembles into handler scripts."""
    return registry().lua_sources()


def validate(settings: config.Settings) -> None:
    """Raise `ConfigError` when `settings` name an unknown command or a command's settings are
    invalid (what loading the configuration checks; for settings built before this package was
    imported, which the configuration's checks could not see)."""
    problems = _ConfigHooks().check(settings)
    if problems:
        raise config.ConfigError(problems)


# -- configuration hooks (smsbot.config.extend) ----------------------------------------------------
class _ConfigHooks:
    """What the configuration needs from the registry, without importing it: former names and
    template keys rewritten (with a note), command names and each command's settings checked."""

    def migrate(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        reg = registry()
        notes: list[tuple[str, str]] = []
        for cls in reg.classes:
            notes += _move_former_settings(raw, cls)
        codes = raw.get("short_codes")
        if isinstance(codes, list):
            for i, sc in enumerate(codes):
                names = sc.get("commands") if isinstance(sc, dict) else None
                if not isinstance(names, list):
                    continue
                for j, n in enumerate(names):
                    new = reg.alias_of.get(n) if isinstance(n, str) else None
                    if new is not None:
                        names[j] = new
                        notes.append((f"short_codes.{i}.commands.{j}",
                                      f"{n!r} is deprecated: the command is now called {new!r} (accepted; rename it)"))
        tpls = raw.get("templates")
        legacy = reg.legacy_names()
        if isinstance(tpls, dict):
            for lang, entries in tpls.items():
                if not isinstance(entries, dict):
                    continue
                for old in [k for k in entries if k in legacy]:
                    new = legacy[old]
                    if new not in entries:
                        entries[new] = entries[old]
                    del entries[old]
                    notes.append((f"templates.{lang}.{old}", f"template {old!r} is now called {new!r} (accepted; rename it)"))
        return notes

    def check(self, settings: config.Settings) -> list[tuple[str, str]]:
        reg = registry()
        problems: list[tuple[str, str]] = []
        known = sorted(reg.by_name)
        for i, sc in enumerate(settings.short_codes):
            seen: set[str] = set()
            for j, name in enumerate(sc.commands):
                real = reg.resolve(name)
                if real is None:
                    problems.append((f"short_codes.{i}.commands.{j}", f"unknown command {name!r}; known: {', '.join(known)}"))
                elif real in seen:
                    problems.append((f"short_codes.{i}.commands.{j}", f"command {real!r} is listed twice"))
                seen.add(real or name)
        for name, section in settings.commands.items():
            cls = reg.by_name.get(name) or reg.by_name.get(reg.alias_of.get(name, ""))
            if cls is None:
                problems.append((f"commands.{name}", f"settings for an unknown command; known: {', '.join(known)}"))
                continue
            if cls.settings_model is None:
                if section:
                    problems.append((f"commands.{name}", "this command takes no settings"))
                continue
            moved = {k for k, _n in config.notes(settings)}
            problems += [(_where_given(cls, key, moved), msg) for key, msg in _validate(cls, name, section or {}, settings)]
        return problems + check_templates(settings, reg.classes)

    def former_keys(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for cls in registry().classes:
            for former, new in cls.former_settings.items():
                section, _, key = former.partition(".")
                out.setdefault(section, []).extend([key] if key else list(cls.settings_model.model_fields))
        return out


def _validate(cls: type[Command], name: str, section: Any, settings: config.Settings) -> list[tuple[str, str]]:
    try:
        cls.settings_model.model_validate(section, context={"settings": settings})
    except ValidationError as e:
        return [(".".join(["commands", name, *(str(p) for p in err["loc"])]), err["msg"]) for err in e.errors()]
    return []


def _now_at(cls: type[Command], new: str) -> str:
    return f"commands.{cls.name}" + (f".{new}" if new else "")


def _move_former_settings(raw: dict[str, Any], cls: type[Command]) -> list[tuple[str, str]]:
    """`cls`'s settings given where they were before (`Command.former_settings`) moved under
    ``commands.<name>``, each noted; a former key given too overrides the new one (an
    ``SMSBOT_<SECTION>_<KEY>`` variable overrides the file)."""
    notes: list[tuple[str, str]] = []
    for former, new in cls.former_settings.items():
        section, _, key = former.partition(".")
        holder = raw.get(section) if key else raw
        name = key or section
        if not isinstance(holder, dict) or name not in holder:
            continue
        if raw.get("commands") is None:
            raw["commands"] = {}
        commands_raw = raw["commands"]
        if not isinstance(commands_raw, dict):
            continue  # not a mapping: the schema says so
        value = holder.pop(name)
        if key and not holder:
            del raw[section]  # nothing left of it there
        own = commands_raw.get(cls.name)
        own = dict(own) if isinstance(own, dict) else {}
        if new:
            own[new] = value
        elif isinstance(value, dict):
            own.update(value)
        else:
            own = value  # not a mapping: its validation names it
        commands_raw[cls.name] = own
        env = f"SMSBOT_{former.replace('.', '_').upper()}{'' if key else '_<KEY>'}"
        env_now = f"SMSBOT_{_now_at(cls, new).replace('.', '_').upper()}{'' if new else '_<KEY>'}"
        notes.append((former, f"{former!r} is now {_now_at(cls, new)!r} (accepted; move it there; {env} is now {env_now})"))
    return notes


def _where_given(cls: type[Command], key: str, moved: set[str]) -> str:
    """A problem's key where the configuration gave it: under its former name when it was moved."""
    for former, new in cls.former_settings.items():
        now = _now_at(cls, new)
        if former in moved and (key == now or key.startswith(now + ".")):
            return former + key[len(now):]
    return key


config.extend(_ConfigHooks())
