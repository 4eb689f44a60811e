"""Every Lua entry point's KEYS, ARGV and result are declared once (smsbot.steps, or a command
package's own `Command.steps`) and used by name, and run by the one runner.

Pure checks, no Redis: each script uses only names its declaration has and every declared name is
used; no Lua file and no Python module indexes KEYS/ARGV by number (outside the generated header
and a step's declared variadic tail); the MO script's result is parsed by name; no Python module
but the store (`Store.run_step`, `run_step_async`, the hot path's round trips) runs a script.
"""

from __future__ import annotations

import ast
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
ALL_STEPS = (*steps.STEPS, *(s for cls in commands.COMMANDS for s in cls.steps))


def _without_comments(lua: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in lua.splitlines())


def _step_sources() -> dict[str, str]:
    """Each step's whole script body (without the generated header)."""
    frags = commands.lua_sources()
    mo = assemble_mo_script(frags)
    return {
        "mo": mo.split("\n", 6)[-1],
        **{s.name: (s.directory / f"{s.name}.lua").read_text(encoding="utf-8") for s in ALL_STEPS if s is not steps.MO},
    }


@pytest.mark.parametrize("step", ALL_STEPS, ids=lambda s: s.name)
def test_each_script_uses_exactly_the_names_its_step_declares(step: steps.Step):
    body = _without_comments(_step_sources()[step.name])
    used_keys = {n for kind, n in USED.findall(body) if kind == "KEY"}
    used_args = {n for kind, n in USED.findall(body) if kind == "ARG"}
    assert used_keys <= set(step.key_names), f"{step.name}: undeclared KEY.{sorted(used_keys - set(step.key_names))}"
    assert used_args <= set(step.arg_names), f"{step.name}: undeclared ARG.{sorted(used_args - set(step.arg_names))}"
    assert used_keys == set(step.key_names), f"{step.name}: declared, never used: {sorted(set(step.key_names) - used_keys)}"
    assert used_args == set(step.arg_names), f"{step.name}: declared, never used: {sorted(set(step.arg_names) - used_args)}"


def test_every_step_has_its_own_name_and_file():
    """`Store.run_step` keeps a loaded script per step name: two steps may not share one."""
    names = [s.name for s in ALL_STEPS]
    assert len(set(names)) == len(names), names
    assert all((s.directory / f"{s.name}.lua").is_file() for s in ALL_STEPS if s is not steps.MO)


def test_no_lua_file_indexes_keys_or_argv_by_number():
    files = [*(REPO / "smsbot").rglob("*.lua"), *(REPO / "commands").glob("*/*.lua")]
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
    call = store.mo_call("subscriptions.menu", "13800138000", "10086", guard_fp="abc", guard_ms=600_000, batch=7, mark=5,
                         sender=me, now_ms=1, extra_keys=("usage",))
    cmd = call.command("sha")
    assert cmd[:3] == ("EVALSHA", "sha", len(steps.MoKeys._fields) + 1)
    keys = cmd[3:3 + cmd[2]]
    assert keys[steps.MoKeys._fields.index("state")] == store.keys.conv("13800138000", "10086")
    assert keys[steps.MoKeys._fields.index("old_guard")] == call.keys.old_guard and call.keys.old_guard.endswith(":abc")
    assert keys[steps.MoKeys._fields.index("marks")] == store.keys.marks(0)  # a single Redis: shard 0's for all
    # the lease in the shard of the stream the replies go to (a single Redis: shard 0's, see Keys.one_outbox)
    assert keys[steps.MoKeys._fields.index("outbox")] == store.keys.outbox(0)
    assert keys[steps.MoKeys._fields.index("lease")] == me.lease_key(0)
    argv = dict(zip(steps.MoArgv._fields, cmd[3 + cmd[2]:]))
    assert argv["token"] == "bot-1/3" and argv["consumer"] == "bot-1" and argv["extra_keys"] == '["usage"]'
    assert (argv["guard_fp"], argv["batch"], argv["mark"]) == ("abc", 7, 5)
    res = steps.MO.parse([b"menu_sent", [[b"1-0", b"subscriptions.menu", b"{}"]], False])
    assert res.outcome == b"menu_sent" and res.sent[0][0] == b"1-0" and res.extra is False


def test_the_live_states_are_declared_once_for_python_and_lua():
    """A subscription's "on" states: smsbot.records for Python (admin, billing verify), the MO
    script's generated header for Lua; no Lua file declares its own."""
    from smsbot.records import LIVE_STATES

    assert f"local LIVE = {{ {', '.join(f'{s} = true' for s in sorted(LIVE_STATES))} }}" in steps.MO.header()
    files = [*(REPO / "smsbot" / "lua").glob("*.lua"), *(REPO / "commands").glob("*/*.lua")]
    assert not [f.name for f in files if re.search(r"^\s*local\s+LIVE\b", f.read_text(encoding="utf-8"), re.M)]


RUNS_A_SCRIPT = frozenset({"register_script", "eval", "evalsha", "eval_ro", "evalsha_ro", "script_load"})
THE_RUNNER = {"smsbot/store.py"}  # Store.run_step / run_step_async / script_load, and the hot path's EVALSHA round trips


def _script_runs(source: str) -> list[str]:
    """Where `source` runs a script itself: register_script / eval / evalsha / script_load, or a raw EVAL*."""
    found = []
    for node in ast.walk(ast.parse(source)):
        called = node.func if isinstance(node, ast.Call) else None
        if isinstance(called, ast.Attribute) and called.attr in RUNS_A_SCRIPT:
            found.append(f"{node.lineno}: .{called.attr}(...)")
        if isinstance(called, ast.Attribute) and called.attr == "execute_command" and node.args \
                and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).upper().startswith("EVAL"):
            found.append(f"{node.lineno}: execute_command({node.args[0].value!r}, ...)")
    return found


def test_no_python_module_but_the_runner_runs_a_script():
    """Every Lua script is a file, declared as a step and run by the one runner: no other module
    calls register_script / eval / evalsha / script_load (the API's steps included) or sends a raw EVAL."""
    offenders = []
    for f in [*(REPO / "smsbot").rglob("*.py"), *(REPO / "commands").rglob("*.py")]:
        rel = f.relative_to(REPO).as_posix()
        if rel not in THE_RUNNER:
            offenders += [f"{rel}:{hit}" for hit in _script_runs(f.read_text(encoding="utf-8"))]
    assert not offenders, "scripts run outside the one runner (smsbot.store):\n" + "\n".join(offenders)


def test_the_runner_check_sees_a_script_run_elsewhere():
    """Not vacuous: the API's former way (register_script on the asyncio client) and a raw EVAL are caught."""
    sample = "def f(client, src):\n    s = client.register_script(src)\n    return client.execute_command('EVAL', src, 0)\n"
    assert _script_runs(sample) == ["2: .register_script(...)", "3: execute_command('EVAL', ...)"]
    assert not _script_runs("def g(store, step):\n    return store.run_step(step, (), ())\n")


def test_a_handlers_script_keeps_what_it_can_reach_and_drops_the_rest():
    """Each handler's script (smsbot.scripts._prune) defines every local function and handler its
    kept code names, and leaves out what nothing in it names (closures made on every call)."""
    frags = commands.lua_sources()
    whole = assemble_mo_script(frags)
    defined = set(re.findall(r"^local function (\w+)\(", whole, re.M))
    every = assemble_handler_scripts(frags)
    for handler, src in every.items():
        code = _without_comments(src)
        mine = set(re.findall(r"^local function (\w+)\(", src, re.M))
        named = {n for n in defined if re.search(rf"\b{n}\b", re.sub(rf"^local function {n}\(", "", code, flags=re.M))}
        assert named <= mine, f"{handler}: names {sorted(named - mine)} but does not define them"
        assert f"handlers['{handler}'] = function" in src or f'handlers["{handler}"] = function' in src
    menu, reply = every["subscriptions.menu"], every["reply"]
    assert "handlers['subscriptions.admin_subscribe']" not in menu and "local function next_order(" not in menu
    assert "conversations['menu'] = function" not in menu
    # the 'reply' handler looks a conversation up by its type: every conversation and what it uses stay
    assert "conversations['menu'] = function" in reply and "conversations['orders'] = function" in reply
    assert "local function sub_put(" in reply and "local function audit(" in reply
