"""The MO script, assembled: the generated header (`smsbot.steps.MO`), lua/prelude.lua, the handler
fragments (core lua/reply.lua and lua/reassembly.lua, the billing steps, every command package's
fragment with its libraries), lua/main.lua; as one script, and as one script per handler (cheaper:
EVALSHA runs a script's whole chunk on each call)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from smsbot.steps import LUA_DIR, MO

_HANDLER_RE = re.compile(r"""^handlers\[['"]([\w.]+)['"]\]""", re.M)  # 'menu', 'subscriptions.menu'
_CONVERSATION_RE = re.compile(r"""^conversations\[['"]""", re.M)


def _lua(item: Path | str) -> str:
    """A fragment: a file (Path), or the Lua source itself (str: a command package's fragment with
    its libraries, as the command registry assembles it)."""
    return item.read_text(encoding="utf-8") if isinstance(item, Path) else item


def assemble_mo_script(command_lua_files: Iterable[Path | str]) -> str:
    """prelude + core handlers + every command fragment + main, as one script (one SHA)."""
    return _assemble([*_core_sources(), *(_lua(p) for p in command_lua_files)])


def assemble_handler_scripts(command_lua_files: Iterable[Path | str]) -> dict[str, str]:
    """One script per handler: prelude + the fragment defining it + main (the 'reply' handler also
    gets every fragment defining a conversation). EVALSHA runs a script's whole chunk each call, so
    a script that does not define every other command's functions is cheaper (~4-5 µs per MO)."""
    core = _core_sources()  # [reply.lua, reassembly.lua]
    frags = [_lua(p) for p in command_lua_files]
    with_conversations = [f for f in frags if _CONVERSATION_RE.search(f)]
    out: dict[str, str] = {}
    for frag in [*core, *frags]:
        for handler in _HANDLER_RE.findall(frag):
            parts = [frag]
            if handler == "reply":
                parts += with_conversations
            out[handler] = _assemble(parts)
    return out


def _core_sources() -> list[str]:
    return [(LUA_DIR / core).read_text(encoding="utf-8") for core in ("reply.lua", "reassembly.lua")]


def _assemble(fragments: list[str]) -> str:
    return MO.source((LUA_DIR / "prelude.lua").read_text(encoding="utf-8"), *fragments,
                     (LUA_DIR / "main.lua").read_text(encoding="utf-8"))
