"""Every Lua entry point's KEYS, ARGV and result are declared once (smsbot.steps) and used by name.

Pure checks, no Redis: each script uses only names its declaration has and every declared name is
used; no Lua file and no Python module indexes KEYS/ARGV by number (outside the generated header
and a step's declared variadic tail); the MO script's result is parsed by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import commands
from smsbot import steps
from smsbot.identity import SenderIdentity
from smsbot.scripts import assemble_handler_scripts, assemble_mo_script

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
NUMBERED = re.compile(r"\b(KEYS|ARGV)\[\s*\d+\s*\]")
USED = re.compile(r"\b(KEY|ARG)_([a-z_]+)")


def _without_comments(lua: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in lua.splitlines())


def _step_sources() -> dict[str, str]:
    """Each step's whole script body (without the generated header)."""
    frags = commands.lua_sources()
    mo = assemble_mo_script(frags)
    return {
        "mo": mo.split("\n", 6)[-1],
        **{s.name: (steps.LUA_DIR / f"{s.name}.lua").read_text(encoding="utf-8") for s in steps.STEPS if s is not steps.MO},
    }


@pytest.mark.parametrize("step", steps.STEPS, ids=lambda s: s.name)
def test_each_script_uses_exactly_the_names_its_step_declares(step: steps.Step):
    body = _without_comments(_step_sources()[step.name])
    used_keys = {n for kind, n in USED.findall(body) if kind == "KEY"}
    used_args = {n for kind, n in USED.findall(body) if kind == "ARG"}
    assert used_keys <= set(step.key_names), f"{step.name}: undeclared KEY.{sorted(used_keys - set(step.key_names))}"
    assert used_args <= set(step.arg_names), f"{step.name}: undeclared ARG.{sorted(used_args - set(step.arg_names))}"
    assert used_keys == set(step.key_names), f"{step.name}: declared, never used: {sorted(set(step.key_names) - used_keys)}"
    assert used_args == set(step.arg_names), f"{step.name}: declared, never used: {sorted(set(step.arg_names) - used_args)}"


def test_no_lua_file_indexes_keys_or_argv_by_number():
    files = [*(REPO / "smsbot" / "lua").glob("*.lua"), *(REPO / "commands").glob("*/*.lua")]
    assert files
    offenders = {str(f.relative_to(REPO)): NUMBERED.findall(_without_comments(f.read_text(encoding="utf-8"))) for f in files}
    assert not {f: hits for f, hits in offenders.items() if hits}


def test_the_header_names_the_declared_positions():
    header = steps.RECEIPT.header()
    assert "local KEY_records, KEY_unmatched = KEYS[1], KEYS[2]" in header
    assert "local ARG_bind, ARG_state, ARG_err, ARG_at, ARG_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]" in header
    assert "local NKEYS, NARGS = 2, 5" in header
    every = assemble_handler_scripts(commands.lua_sources())
    assert every and all(src.startswith(steps.MO.header()) for src in every.values())


def test_no_python_module_indexes_a_call_by_number():
    """A script call's KEYS and ARGV are read by name (call.keys.guard), never call.keys[2]."""
    pattern = re.compile(r"\b(?:call|c|calls\[i\])\.(?:keys|argv)\[\d+\]")
    offenders = []
    for f in [*(REPO / "smsbot").rglob("*.py"), *(REPO / "commands").rglob("*.py")]:
        if pattern.search(f.read_text(encoding="utf-8")):
            offenders.append(str(f.relative_to(REPO)))
    assert not offenders


def test_an_mo_call_is_built_and_its_reply_read_by_name(make_unit_store):
    store = make_unit_store()
    me = SenderIdentity("bot-1", tuple(store.keys.lease_prefix(n) for n in range(store.keys.shards)), session=3)
    call = store.mo_call("subscriptions.menu", "13800138000", "10086", guard_fp="abc", guard_ms=600_000, sender=me,
                         now_ms=1, extra_keys=("usage",))
    cmd = call.command("sha")
    assert cmd[:3] == ("EVALSHA", "sha", len(steps.MoKeys._fields) + 1)
    keys = cmd[3:3 + cmd[2]]
    assert keys[steps.MoKeys._fields.index("guard")] == call.keys.guard and call.keys.guard.endswith(":abc")
    # the lease in the shard of the stream the replies go to (a single Redis: shard 0's, see Keys.one_outbox)
    assert keys[steps.MoKeys._fields.index("outbox")] == store.keys.outbox(0)
    assert keys[steps.MoKeys._fields.index("lease")] == me.lease_key(0)
    argv = dict(zip(steps.MoArgv._fields, cmd[3 + cmd[2]:]))
    assert argv["token"] == "bot-1/3" and argv["consumer"] == "bot-1" and argv["extra_keys"] == '["usage"]'
    res = steps.MO.parse([b"menu_sent", [[b"1-0", b"subscriptions.menu", b"{}"]], False])
    assert res.outcome == b"menu_sent" and res.sent[0][0] == b"1-0" and res.extra is False


def test_the_live_states_are_declared_once_for_python_and_lua():
    """A subscription's "on" states: smsbot.records for Python (admin, billing verify), the MO
    script's generated header for Lua; no Lua file declares its own."""
    from smsbot.records import LIVE_STATES

    assert f"local LIVE = {{ {', '.join(f'{s} = true' for s in sorted(LIVE_STATES))} }}" in steps.MO.header()
    files = [*(REPO / "smsbot" / "lua").glob("*.lua"), *(REPO / "commands").glob("*/*.lua")]
    assert not [f.name for f in files if re.search(r"^\s*local\s+LIVE\b", f.read_text(encoding="utf-8"), re.M)]
