"""Commands as self-contained packages: the registry's checks, the layering, former names, and a
hypothetical new command that touches only its own package and the registry list.

Real Redis for the Lua steps (no mocks); the registry and router are the ones the bot uses.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import commands
from smsbot import config, connections
from smsbot.config import Language
from smsbot.registry import Registry, owned
from smsbot.router import Router
from smsbot.text import after_keyword

from .conftest import REPO

PACKAGES = ("subscriptions", "usage", "orders", "bill", "complaints", "help")


def test_the_registry_is_one_list_of_packages_each_with_its_lua_and_templates():
    reg = commands.registry()
    assert [c.name for c in reg.classes] == list(PACKAGES)
    for cls in reg.classes:
        pkg = REPO / "commands" / cls.name
        assert cls.package_dir() == pkg
        per_lang = cls.package_templates()
        # every language has the same keys, and each template formats with the values its renderers give
        assert set(per_lang) == {lang.value for lang in Language}, cls.name
        assert set(per_lang["zh-CN"]) == set(per_lang["en"]), cls.name
        assert all(owned(k, cls.name) for k in per_lang["zh-CN"])
        lua = cls.lua_path()
        assert (lua is None) == (cls.name == "help")  # help's handler is core (lua/reply.lua)
    handlers = {h for src in commands.lua_sources() for h in __import__("re").findall(r"handlers\['([^']+)'\]", src)}
    assert {"subscriptions.menu", "usage.query", "orders.cancel", "bill.query", "complaints.open",
            "billing.charge_period", "billing.charge_use"} <= handlers


def _fake_package(tmp_path: Path, name: str, lua: str, templates: dict[str, str], body: str = "") -> type:
    """Write commands-like package `name` under tmp_path and import its command class."""
    pkg = tmp_path / f"fake_{name}_{abs(hash(lua)) % 10**8}"
    (pkg / "templates").mkdir(parents=True)
    source = ["from smsbot.command import Command, Intent", "", "", "class Fake(Command):", f"    name = {name!r}"]
    source += ["    " + line for line in textwrap.dedent(body).splitlines()]
    (pkg / "__init__.py").write_text("\n".join(source) + "\n", encoding="utf-8")
    (pkg / f"{name}.lua").write_text(lua, encoding="utf-8")
    for lang in ("zh-CN", "en"):
        (pkg / "templates" / f"{lang}.yaml").write_text(yaml.safe_dump(templates, allow_unicode=True), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(pkg.name).Fake
    finally:
        sys.path.remove(str(tmp_path))


def _problems(*extra: type) -> str:
    with pytest.raises(config.ConfigError) as e:
        Registry([*commands.COMMANDS, *extra], fragments=[("billing", commands.billing.lua_fragment())])
    return "\n".join(m for _k, m in e.value.errors)


def test_collisions_and_unprefixed_names_are_refused_at_start(tmp_path):
    # a second package claiming the 0000 menu handler, and one with a handler outside its namespace
    clash = _fake_package(tmp_path, "subscriptions", "handlers['subscriptions.menu'] = function() return 'x' end\n", {"a": "A"})
    assert "command name 'subscriptions' is used twice" in _problems(clash)
    rogue = _fake_package(tmp_path, "rogue", "handlers['menu'] = function() reply('rogue.hi', {}) return 'x' end\n"
                                             "handlers['bill.query'] = function() return 'y' end\n", {"hi": "hi"})
    msg = _problems(rogue)
    assert "handler 'menu' of command 'rogue'" in msg and "not prefixed by 'rogue'" in msg
    assert "handler 'bill.query' is defined by both command 'bill'" in msg
    # a reply the Lua writes that nothing can render; a renderer outside the namespace; a former name reused
    mute = _fake_package(tmp_path, "mute", "handlers['mute.go'] = function() reply('mute.nothing', {}) return 'x' end\n",
                         {"hi": "hi"}, body="""
        aliases = ("reminders",)
        def renderers(self):
            return {"help": lambda ctx, d: ""}
        """)
    msg = _problems(mute)
    assert "replies with 'mute.nothing', which is neither a template nor a renderer" in msg
    assert "renderer 'help' of command 'mute'" in msg
    assert "command name 'reminders' is used twice" in msg


def test_config_does_not_import_commands_nor_do_the_layers_below_the_registry():
    code = ("import sys; import smsbot.config, smsbot.store, smsbot.transport, smsbot.dispatch, smsbot.router, "
            "smsbot.billing, smsbot.simulator.smsc; "
            "bad = [m for m in sys.modules if m == 'commands' or m.startswith('commands.')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr


def test_former_names_still_work_with_a_note(make_settings, tmp_path):
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["short_codes"][0]["commands"] = ["subscriptions", "reminders", "help"]
    raw["templates"] = {"zh-CN": {"menu_header": "您的包月业务：", "cmd_reminders": "TD 退订新业务"}}
    s = config.from_dict(raw)
    assert s.short_codes[0].commands == ["subscriptions", "orders", "help"]
    assert s.templates["zh-CN"] == {"subscriptions.header": "您的包月业务：", "orders.help": "TD 退订新业务"}
    keys = [k for k, _n in config.notes(s)]
    assert keys == ["short_codes.0.commands.1", "templates.zh-CN.menu_header", "templates.zh-CN.cmd_reminders"]
    # `smsbot config check` accepts it and says so
    cfg = tmp_path / "old.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "config", "check"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "configuration OK" in res.stdout
    assert "note: short_codes.0.commands.1: 'reminders' is deprecated: the command is now called 'orders'" in res.stdout
    # intents queued by a version before the packages (old template names) still render
    router = Router(make_settings(), commands.all_commands())
    assert router.render("menu_empty", {}, "zh-CN", "10086") == router.render("subscriptions.empty", {}, "zh-CN", "10086")
    assert "视频会员包月" in router.render("reminder", {"code": "VIDEO", "due": 1796000000000, "word": "TD"}, "zh-CN", "10086")


def test_command_settings_are_checked_by_the_command(tmp_path):
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["commands"] = {"complaints": {"max_per_day": 0, "timezone": "Mars/Olympus"}, "nosuch": {"x": 1}, "bill": {"x": 1}}
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    keys = {k for k, _m in e.value.errors}
    assert {"commands.complaints.max_per_day", "commands.complaints.timezone", "commands.nosuch", "commands.bill"} <= keys
    raw["commands"] = {}
    s = config.load(REPO / "config.yaml", environ={"SMSBOT_COMMANDS_COMPLAINTS_MAX_PER_DAY": "7"})
    assert commands.ComplaintsCommand().options(s).max_per_day == 7


def test_match_sees_the_raw_text():
    assert after_keyword("Ts 网速慢！ABC", "TS") == "网速慢！ABC"
    assert after_keyword("  ｔｓ：Ｍｉｘｅｄ", "TS") == "Ｍｉｘｅｄ"
    assert after_keyword("投诉，信号差😀", "投诉") == "信号差😀"
    assert after_keyword("TSCX", "TS") == "CX"
    assert after_keyword("T", "TS") is None and after_keyword("XTS", "TS") is None


def test_a_new_command_is_its_own_package_plus_one_line_in_the_list(make_settings, tmp_path):
    """A hypothetical 'echo' command: a matcher on the raw text, a Lua step with a key of its own
    (declared, with the subscriber's hash tag), its templates. Registered beside the real ones, it
    runs through the real store and router against Redis; nothing else is edited."""
    echo = _fake_package(tmp_path, "echo", textwrap.dedent("""
        handlers['echo.say'] = function()
          local n = redis.call('INCR', ctx.key.echoes)
          reply('echo.said', { text = ctx.args.text, n = n })
          return 'echoed'
        end
        """), {"said": "第{n}次：{text}", "help": "ECHO 回声"}, body="""
        help_template = "help"
        def match(self, norm, raw, settings, now_ms):
            if norm.startswith("ECHO "):
                return Intent("echo.say", self.name, {"text": raw.split(" ", 1)[1]}, keys=("echoes",))
            return None
        """)
    reg = Registry([*commands.COMMANDS, echo], fragments=[("billing", commands.billing.lua_fragment())])
    base = make_settings()  # the config check knows the real list only: the short code is given the new one directly
    s = base.model_copy(update={"short_codes": [config.ShortCodeSettings(code="10086", commands=["subscriptions", "echo", "help"])]})
    store = connections.store(s, reg.lua_sources())
    try:
        store.load_scripts()
        router = Router(s, reg.instances())
        intent = router.route("10086", "echo Hello 世界")
        assert (intent.handler, intent.args["text"]) == ("echo.say", "Hello 世界")
        queue = store.keys.subscriber("13800138000").queue
        for n in (1, 2):
            res = store.run_one(store.mo_call(intent.handler, "13800138000", "10086", args=intent.args, extra_keys=intent.keys))
            assert res.outcome == "echoed"
            _id, raw = store.redis.xrange(queue)[-1]
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            assert router.replies.render_text(fields["tpl"], fields["data"], "zh-CN", "10086") == f"第{n}次：Hello 世界"
        key = store.keys.named("echoes", "13800138000")
        assert store.redis.get(key) == b"2" and key.startswith(store.keys.subscriber("13800138000").tag + ":")
        assert "ECHO 回声" in router.render("help", {}, "zh-CN", "10086")
    finally:
        store.close()
