"""CLI wiring of the command registry (and, next, customer care's ``smsbot tickets``).

Registered on `smsbot.cli.main` by the import at the bottom of ``smsbot/cli.py``. Importing this
module also loads the command registry, whose configuration checks (command names, each
command's settings, deprecated names) then apply to every CLI command; ``smsbot config check``
additionally prints the notes about deprecated names it accepted.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import click

import commands  # noqa: F401  (the registry: installs its configuration checks, see smsbot.config.extend)
from smsbot import config as config_mod

EXIT_NOT_FOUND = 1


def _host_cli():  # noqa: ANN202
    """The `smsbot.cli` module to register on: `__main__` under ``python -m smsbot.cli`` (the module then
    runs as __main__; importing smsbot.cli would build a second group with its own Ctx class)."""
    m = sys.modules.get("__main__")
    spec = getattr(m, "__spec__", None)
    if spec is not None and spec.name == "smsbot.cli" and isinstance(getattr(m, "main", None), click.Group):
        return m
    import importlib

    return sys.modules.get("smsbot.cli") or importlib.import_module("smsbot.cli")


_cli = _host_cli()
main, Ctx, pass_ctx = _cli.main, _cli.Ctx, _cli.pass_ctx


# -- `config check` prints the notes of the registry's checks --------------------------------------
def _check_with_notes(group: click.Group) -> None:
    check = group.commands.get("check") if isinstance(group, click.Group) else None
    if check is None or getattr(check.callback, "_prints_notes", False):
        return
    original = check.callback

    @functools.wraps(original)  # type: ignore[arg-type]
    def callback(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)  # type: ignore[misc]
        c = click.get_current_context().find_object(Ctx)
        if c is not None:
            for key, note in config_mod.notes(c.settings):
                click.echo(f"note: {key}: {note}")
        return out

    callback._prints_notes = True  # type: ignore[attr-defined]
    check.callback = callback


_check_with_notes(main.commands.get("config"))  # type: ignore[arg-type]
