"""Reply templates: the core's (``smsbot/templates/<lang>.yaml``), each command package's, the
configuration's overrides; and the check every configuration load runs on them."""

from __future__ import annotations

import difflib
import string
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from smsbot.codec import segment_text
from smsbot.config import Language, Settings

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"  # the core's own templates


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


def check_templates(settings: Settings, command_classes: Sequence[type]) -> list[tuple[str, str]]:
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
    known, problems = _packaged_templates(tuple(command_classes))
    problems = list(problems)
    langs = [lang.value for lang in Language]
    for lang, entries in settings.templates.items():
        if lang not in langs:
            problems.append((f"templates.{lang}", f"unknown language {lang!r}; known: {', '.join(langs)}"))
            continue
        for name, text in entries.items():
            key = f"templates.{lang}.{name}"
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known names start with a command: {', '.join(sorted({k.split('.')[0] + '.' for k in known if '.' in k}))}"
                problems.append((key, f"unknown template {name!r}; {hint}"))
                continue
            problem = _template_problem(str(text))
            if problem:
                problems.append((key, problem))
    return problems


@lru_cache(maxsize=8)
def _packaged_templates(classes: tuple[type, ...]) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
    """(every template name, problems of the packaged templates) of a list of command classes
    (`smsbot.command.Command` subclasses)."""
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
    try:
        fixed = "".join(literal for literal, *_ in string.Formatter().parse(text))
    except ValueError as e:
        return f"not a valid template: {e} (write {{{{ and }}}} for literal braces)"
    try:
        segment_text(fixed)
    except ValueError as e:
        return f"too long to send even with empty placeholders: {e}"
    return None
