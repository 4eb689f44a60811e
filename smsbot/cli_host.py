"""Where the CLI modules beside `smsbot.cli` (billing, tickets) register their commands.

`smsbot.cli` imports them at its end; they need its click group. This module imports nothing of
smsbot's, so any of them may be imported first without a circular import.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import click


def host_cli() -> ModuleType:
    """The `smsbot.cli` module to register on: `__main__` under ``python -m smsbot.cli`` (the module
    then runs as __main__; importing smsbot.cli would build a second group with its own Ctx class).
    While smsbot.cli runs its bottom-line imports it is in sys.modules, its group already built."""
    m = sys.modules.get("__main__")
    spec = getattr(m, "__spec__", None)
    if spec is not None and spec.name == "smsbot.cli" and isinstance(getattr(m, "main", None), click.Group):
        return m  # type: ignore[return-value]
    return sys.modules.get("smsbot.cli") or importlib.import_module("smsbot.cli")
