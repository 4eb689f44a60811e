"""What the command registry adds to validation (`extend`): rewriting former names in the raw
mapping (each noted; `notes` reads them back) and checks that need the commands."""

from __future__ import annotations

from typing import Any

from smsbot.config.schema import Settings

# Checks that need the command registry (command names, each command's own settings) and the
# rewriting of former names: added by the registry (`commands`, when imported) through `extend`,
# so the configuration stays plain data and never imports a command.
_extensions: list[Any] = []


def extend(hooks: Any) -> None:
    """Add `hooks.migrate(raw) -> [(key, note)]` (rewrites deprecated names in the raw mapping,
    noting each) and `hooks.check(settings) -> [(key, problem)]` to every `from_dict` / `load`."""
    if hooks not in _extensions:
        _extensions.append(hooks)


def notes(settings: Settings) -> list[tuple[str, str]]:
    """(key, note) for what the configuration says in a deprecated way (accepted): `config check` prints them."""
    return list(settings._notes)


def installed() -> list[Any]:
    """The hooks added so far, in the order `extend` got them."""
    return list(_extensions)
