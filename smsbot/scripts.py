"""The MO script, assembled: the generated header (`smsbot.steps.MO`), lua/prelude.lua, the handler
fragments (core lua/reply.lua and lua/reassembly.lua, the billing steps, every command package's
fragment with its libraries), lua/main.lua; as one script, and as one script per handler (cheaper:
EVALSHA runs a script's whole chunk on each call, and every function it defines is a closure made
again on each call).

A handler's script keeps only what that handler can reach (`_prune`): the top-level definitions
written as blocks at column 0 — ``local function name(...)`` and ``handlers['x'] = function(...)`` /
``conversations['x'] = function(...)``, each closed by an ``end`` at column 0 (or on its one line) —
are dropped when nothing kept names them: a local function whose name appears nowhere else, another
command's handler, the conversations unless a kept line looks one up by its type
(``conversations[conv.type]``, the 'reply' handler). A local can only be reached through its name,
so the text alone decides; every other line is kept as it is."""

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
            out[handler] = MO.source(_prune(_body(parts), handler))
    return out


_BLOCK_RE = re.compile(r"""^(?:local function (\w+)\(|(handlers|conversations)\[['"]([\w.]+)['"]\] = function\()""")
_ONE_LINE_RE = re.compile(r"\bend\s*$")
_COMMENT_LINE_RE = re.compile(r"^\s*--")  # a whole-line comment names nothing (a trailing one may, harmlessly)
_DYNAMIC_CONVERSATION_RE = re.compile(r"""conversations\[(?!['"])""")


def _prune(body: str, handler: str) -> str:
    """`body` without the definitions `handler`'s script cannot reach (see the module's docstring)."""
    lines = body.split("\n")
    kept: list[str] = []  # the lines outside prunable blocks, and the blocks kept as roots
    blocks: list[tuple[int, str, str, list[str]]] = []  # (position in kept, kind, name, lines)
    i = 0
    while i < len(lines):
        m = _BLOCK_RE.match(lines[i])
        if not m:
            kept.append(lines[i])
            i += 1
            continue
        end = i
        if not (m.group(1) and _ONE_LINE_RE.search(lines[i])):
            end += 1
            while end < len(lines) and lines[end] != "end":
                if lines[end][:1] not in ("", " ", "\t") and not _COMMENT_LINE_RE.match(lines[end]):
                    return body  # code at column 0 inside a block: not written the way this reads it; keep all
                end += 1
            if end == len(lines):
                return body
        kind, name = ("local", m.group(1)) if m.group(1) else (m.group(2), m.group(3))
        blocks.append((len(kept), kind, name, lines[i:end + 1]))
        kept.append("")  # the block's place
        i = end + 1
    wanted = {j for j, (_at, kind, name, _b) in enumerate(blocks) if kind == "handlers" and name == handler}
    reached = "\n".join([_code(kept), *(_code(blocks[j][3]) for j in wanted)])
    while True:
        by_type = bool(_DYNAMIC_CONVERSATION_RE.search(reached))
        more = {j for j, (_at, kind, name, block) in enumerate(blocks) if j not in wanted and (
            kind == "local" and re.search(rf"\b{name}\b", reached)
            or kind == "handlers" and re.search(rf"""handlers\[['"]{re.escape(name)}['"]\](?! = function)""", reached)
            or kind == "conversations" and by_type)}
        if not more:
            break
        wanted |= more
        reached += "\n" + "\n".join(_code(blocks[j][3]) for j in more)
    for j in wanted:
        kept[blocks[j][0]] = "\n".join(blocks[j][3])
    return "\n".join(kept)


def _code(lines: list[str]) -> str:
    """`lines` without whole-line comments."""
    return "\n".join(line for line in lines if not _COMMENT_LINE_RE.match(line))


def _core_sources() -> list[str]:
    return [(LUA_DIR / core).read_text(encoding="utf-8") for core in ("reply.lua", "reassembly.lua")]


def _body(fragments: list[str]) -> str:
    """prelude + `fragments` + main, without the header."""
    return "\n".join([(LUA_DIR / "prelude.lua").read_text(encoding="utf-8"), *fragments,
                      (LUA_DIR / "main.lua").read_text(encoding="utf-8")])


def _assemble(fragments: list[str]) -> str:
    return MO.source(_body(fragments))
