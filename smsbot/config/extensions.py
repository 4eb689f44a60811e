"""What the command registry adds to validation (`extend`): rewriting former names in the raw
mapping (each noted; `notes` reads them back), the keys still taken under a former name (a
command's settings that lived in a core section: `former_keys`, for ``SMSBOT_*`` variables), and
checks that need the commands."""

from __future__ import annotations

from typing import Any

from smsbot.config.schema import Settings

# Checks that need the command registry (command names, each command's own settings) and the
# rewriting of former names: added by the registry (`commands`, when imported) through `extend`,
# so the configuration stays plain data and never imports a command.
_extensions: list[Any] = []


def extend(hooks: Any) -> None:
    """Add `hooks.migrate(raw) -> [(key, note)]` (rewrites deprecated names in the raw mapping,
    noting each; the notes are on the settings when `check` runs), `hooks.check(settings) -> [(key,
    problem)]` and `hooks.former_keys() -> {section: [key, ...]}` (keys `migrate` moves from where
    they were: ``SMSBOT_<SECTION>_<KEY>`` still sets them) to every `from_dict` / `load`."""
    if hooks not in _extensions:
        _extensions.append(hooks)


def notes(settings: Settings) -> list[tuple[str, str]]:
    """(key, note) for what the configuration says in a deprecated way (accepted): `config check` prints them."""
    return list(settings._notes)


def installed() -> list[Any]:
    """The hooks added so far, in the order `extend` got them."""
    return list(_extensions)


def former_keys() -> dict[str, list[str]]:
    """Section -> keys taken under a former name (`migrate` moves them): the installed hooks' together."""
    out: dict[str, list[str]] = {}
    for hooks in _extensions:
        for section, keys in hooks.former_keys().items():
            known = out.setdefault(section, [])
            known += [k for k in keys if k not in known]
    return out
