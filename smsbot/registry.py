"""The registry of command packages, checked when the bot starts: every command's name and
aliases, and that each handler, conversation, renderer and template name is prefixed by its
command and defined once (core names included); a refusal is a `ConfigError` naming each problem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from smsbot.command import Command
from smsbot.config import ConfigError, Language
from smsbot.reply_templates import Templates

# Core names (smsbot/lua/reply.lua, lua/reassembly.lua, the catalogue): no command may use them.
CORE_HANDLERS = frozenset({"reply", "help", "part"})
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9]{0,23}$")
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
