"""`smsbot ismg` end to end: the real CLI runs the simulated ISMG (CMPP 3.0) with its control API and
web page; the bot (`smsc.protocol: cmpp3`) connects to it over TCP; handsets (`smsbot handset`,
the control API, the page in headless Chromium) send MOs and read the replies, with receipts.
Each fault mode and the field profile: the bot answers, and nothing is applied twice."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from smsbot import admin, config
from smsbot.app import Bot
from tests.conftest import base_config
from tests.api_client import json_call
from tests.running_bot import stop_process
from tests.helpers import wait_until
from tests.browser import Page
from tests.cmpp_sp import CMPP_SERVICES, SECRET, SP_ID

MSISDN = "13800138000"
CODE = "10086"
MENU_LINE = "1. 视频会员包月 15元/月"
CANCELLED = "您已成功退订视频会员包月"


class IsmgCli:
    """`smsbot ismg` as a process, the bot on it, and the control API."""

    def __init__(self, proc: subprocess.Popen, url: str, port: int, bot: Bot, err: Path):
        self.proc, self.url, self.port, self.bot, self.err = proc, url, port, bot, err

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return json_call(self.url, method, path, body, timeout=30)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status in (200, 202), (method, path, status, answer)
        return answer

    def subscribe(self, msisdn: str, *codes: str) -> None:
        for code in codes:
            assert admin.subscribe(self.bot.settings, msisdn, code, store=self.bot.store) in ("added", "exists")

    def mo(self, text: str, msisdn: str = MSISDN, timeout: float = 30) -> dict[str, Any]:
        mo = self.ok("POST", "/mo", {"from": msisdn, "to": CODE, "text": text})
        assert wait_until(lambda: self.ok("GET", f"/mo/{mo['id']}")["state"] in ("delivered", "rejected"), timeout)
        return self.ok("GET", f"/mo/{mo['id']}")

    def reply(self, msisdn: str = MSISDN, wait: float = 30) -> str:
        got = self.ok("GET", f"/inbox/{msisdn}?wait={wait}")["messages"]
        assert len(got) == 1, got
        return got[0]["text"]

    def ask(self, text: str, msisdn: str = MSISDN) -> str:
        assert self.mo(text, msisdn)["state"] == "delivered"
        return self.reply(msisdn)

    def items(self, msisdn: str = MSISDN) -> list[dict[str, Any]]:
        return self.ok("GET", f"/web/conversation/{msisdn}")["items"]

    def receipts_delivered(self, msisdn: str = MSISDN) -> bool:
        mts = [i for i in self.items(msisdn) if i["kind"] == "mt"]
        return all(len(m["receipts"]) == m["parts"] and all(r["state"] == "delivered" for r in m["receipts"])
                   for m in mts)


@pytest.fixture
def ismg_cli(request: pytest.FixtureRequest, redis_server, tmp_path: Path) -> Iterator[IsmgCli]:
    """`smsbot ismg` and the bot on `smsc.protocol` cmpp3 (or the parameter: cmpp2)."""
    protocol = getattr(request, "param", "cmpp3")
    raw = base_config(redis_server.url, tmp_path / "var", **{
        "smsc.protocol": protocol, "smsc.registered_delivery": 1,
        "smsc.cmpp": {"sp_id": SP_ID, "secret": SECRET, "services": CMPP_SERVICES}})
    raw["log"]["level"] = "INFO"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    err = tmp_path / "ismg.err"
    with open(err, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "ismg", "--cmpp-port", "0",
                                 "--control-port", "0"], stdout=subprocess.DEVNULL, stderr=err_file)
    bot = None
    try:
        version = "3\\.0" if protocol == "cmpp3" else "2\\.0"
        banner = re.compile(rf"CMPP {version} on 127\.0\.0\.1:(\d+) \(SP 901234\).*handset API (http://127\.0\.0\.1:\d+)")
        assert wait_until(lambda: banner.search(err.read_text()) or proc.poll() is not None, 30) and proc.poll() is None, \
            err.read_text()
        found = banner.search(err.read_text())
        assert found is not None
        port, url = int(found.group(1)), found.group(2)
        raw["smsc"]["port"] = port
        bot = Bot(config.from_dict(raw))
        world = IsmgCli(proc, url, port, bot, err)
        bot.start()
        assert wait_until(lambda: world.ok("GET", "/healthz")["binds"] == 1, 30)
        yield world
    finally:
        if bot is not None:
            bot.stop()
        stop_process(proc)


@pytest.mark.parametrize("ismg_cli", ["cmpp3", "cmpp2"], indirect=True)
def test_smsbot_ismg_serves_the_bot_and_the_handsets_over_cmpp(ismg_cli: IsmgCli, request: pytest.FixtureRequest):
    w = ismg_cli
    health = w.ok("GET", "/healthz")
    assert health == {"ok": True, "protocol": "cmpp", "cmpp_port": w.port, "binds": 1}
    version = "CMPP 3.0" if request.node.callspec.params["ismg_cli"] == "cmpp3" else "CMPP 2.0"
    assert w.ok("GET", "/binds")["binds"][0]["mode"] == version
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    # the handset CLI on the ISMG's control API: it sends; once the reply waits, it picks it up
    def handset(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "smsbot.cli", "handset", MSISDN, *args, "--control", w.url],
                              capture_output=True, text=True, timeout=60)
    sent = handset("--send", "0000", "--wait", "0")
    assert sent.returncode == 0, (sent.stdout, sent.stderr)
    shown = sent.stdout
    if MENU_LINE not in shown:  # a reply that came back before the send returned was shown by it
        assert wait_until(lambda: w.ok("GET", f"/inbox/{MSISDN}?peek=1")["messages"], 30)
        got = handset("--wait", "0")
        assert got.returncode == 0, (got.stdout, got.stderr)
        shown = got.stdout
    assert MENU_LINE in shown, shown
    # the control API's handset: a numeric cancel
    assert CANCELLED in w.ask("1")
    assert wait_until(w.receipts_delivered, 20), w.items()
    mts = [i for i in w.items() if i["kind"] == "mt"]
    assert len(mts) == 2 and all(m["inbox"] == "picked up" and m["receipt_asked"] for m in mts)
    submits = w.ok("GET", "/submits")["submits"]
    assert submits and all(e["status"] == 0 and e["src_id"] == CODE and e["msg_src"] == SP_ID for e in submits)


def test_a_port_in_use_is_one_line_and_exit_2(redis_server, tmp_path: Path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        raw = base_config(redis_server.url, tmp_path / "var")
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        res = subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "ismg", "--cmpp-port", str(port)],
                             capture_output=True, text=True, timeout=60)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"port {port}" in lines[0] and "--cmpp-port" in lines[0]


FAULTS = [
    pytest.param({"drop_after_resp": 1}, id="drop_after_resp"),
    pytest.param({"drop_after_submit": 1}, id="drop_after_submit"),
    pytest.param({"throttle_first": 1}, id="throttle_result_8"),
    pytest.param({"resp_delay_ms": 400}, id="resp_delay"),
    pytest.param("partial", id="partial_pdu_then_silence"),
]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_mode_the_bot_answers_and_nothing_is_applied_twice(ismg_cli: IsmgCli, fault: Any):
    w = ismg_cli
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    if fault == "partial":
        assert w.ok("POST", "/partial", {})["announced"] == 200
    else:
        w.ok("POST", "/faults", fault)
    menu = w.ask("0000")
    assert MENU_LINE in menu
    assert CANCELLED in w.ask("1")
    w.ok("POST", "/faults", {})
    # after the fault: the menu without the cancelled service, and nothing else came meanwhile
    after = w.ask("0000")
    assert MENU_LINE not in after and "彩铃音乐包" in after
    copies = w.bot.metrics.reply_copies._value.get()
    history = [m["text"] for m in w.ok("GET", f"/inbox/{MSISDN}?history=1")["messages"]]
    assert len(history) == 3 + copies and copies <= 1, history
    accepted = [e for e in w.ok("GET", "/submits")["submits"] if e["status"] == 0]
    parts = sum(m["parts"] for m in w.items() if m["kind"] == "mt")
    assert len(accepted) == parts, (accepted, parts)  # every accepted SUBMIT stored once
    assert wait_until(w.receipts_delivered, 20), w.items()
    stats = w.ok("GET", "/stats")
    if fault == "partial":
        assert stats["partials_sent"] == 1 and stats["connects"] >= 2
    elif "throttle_first" in fault:
        assert stats["submits_throttled"] == 1
    elif "drop_after_resp" in fault or "drop_after_submit" in fault:
        assert stats["connections_dropped"] == 1 and stats["connects"] >= 2


def test_the_field_profile_over_cmpp(ismg_cli: IsmgCli):
    w = ismg_cli
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    profile = w.ok("POST", "/profile", {"profile": "field", "msg_id_cycle": 2})
    assert profile["flags"]["padding"] == "space" and profile["flags"]["mo_msg_fmt"] == 15
    assert MENU_LINE in w.ask("0000")
    assert CANCELLED in w.ask("1")
    mo = w.mo("帮助")  # GBK, from 8613800138000, space-padded fields
    assert mo["state"] == "delivered"
    assert w.reply()
    after = w.ask("0000")
    assert MENU_LINE not in after and "彩铃音乐包" in after
    ids = [e["msg_id"] for e in w.ok("GET", "/submits")["submits"] if e["status"] == 0]
    assert len(ids) > len(set(ids)) == 2  # Msg_Ids reused
    assert wait_until(w.receipts_delivered, 20), w.items()
    assert w.bot.metrics.reply_copies._value.get() == 0
    assert len(w.ok("GET", f"/inbox/{MSISDN}?history=1")["messages"]) == 4


def test_the_handsets_page_over_cmpp_in_chromium(ismg_cli: IsmgCli, browser: Any, tmp_path: Path):  # noqa: F811
    w = ismg_cli
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    browser.get(w.url + "/")
    page = Page(browser, tmp_path)
    page.wait("the live stream", lambda: page.one("#live").get_attribute("data-state") == "live")
    page.wait("the bot's CMPP connection listed", lambda: "CMPP 3.0" in page.one("#binds").text
              and SP_ID in page.one("#binds").text)
    one = page.handset(MSISDN)
    assert page.one(".shortcode", one).get_attribute("value") == CODE
    page.send(one, "0000")
    menu = page.mt_with(one, MENU_LINE)
    page.wait("the MO marked delivered", lambda: page.one(".msg.mo .state", one).get_attribute("data-state") == "delivered")
    receipt = page.wait("the menu's status report acknowledged", lambda: (
        r := page.one(".receipt", menu)).get_attribute("data-state") == "delivered" and r)
    assert receipt.text == "✓✓ DELIVRD"
    page.send(one, "2")
    page.mt_with(one, "您已成功退订彩铃音乐包")
    assert [e.text for e in page.all(".msg.mo .text", one)] == ["0000", "2"]
    # a fault mode from the side panel: the bot's next SUBMIT gets Result 8, is retried, delivered
    form = page.one("#faults")
    page.one("input[name=throttle_first]", form).send_keys("1")
    page.one("#faults-apply").click()
    page.wait("the fault plan applied", lambda: w.ok("GET", "/faults")["throttle_first"] == 1)
    page.send(one, "1")
    page.mt_with(one, CANCELLED)
    assert w.ok("GET", "/stats")["submits_throttled"] == 1
    assert browser.save_screenshot(str(tmp_path / "ismg-page.png"))
