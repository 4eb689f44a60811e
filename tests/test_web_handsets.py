"""The testers' web page of the simulated SMSC (``GET /`` on its control port), its live event stream
and its conversation view; the page itself driven in a real headless Chromium.

The HTTP-level tests always run. The browser tests need Debian's ``chromium`` and ``chromium-driver``
(and ``fonts-noto-cjk`` for the Chinese in the screenshot; ``.ci/run`` installs them) and skip,
saying so, only when Chromium or its driver is not installed. Set ``SMSBOT_WEB_SCREENSHOT=PATH`` to
also write the screenshot there (``docs/handsets.png`` is made that way).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from selenium.webdriver.support.ui import Select

from smsbot import pdu
from smsbot.config import SimulatorSettings, SmscSettings
from smsbot.simulator import SimSmsc
from smsbot.simulator.events import SimEvents

from .browser import Page
from .conftest import REPO, World

MSISDN = "13800138000"
OTHER = "13800138001"


# -- helpers ---------------------------------------------------------------------------------------
def http(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str) -> Any:
    code, _, raw = http(url)
    assert code == 200, raw
    return json.loads(raw)


class EventStream:
    """A reader of ``GET /events``: every event as (kind, id, data), gathered by a thread."""

    def __init__(self, base: str, last_event_id: int | None = None):
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self.resp = urllib.request.urlopen(urllib.request.Request(base + "/events", headers=headers), timeout=30)
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.q: queue.Queue[tuple[str, int | None, Any] | None] = queue.Queue()
        self.events: list[tuple[str, int | None, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind, eid, data = "message", None, []
        try:
            for raw in self.resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if data:
                        self.q.put((kind, eid, json.loads("\n".join(data))))
                    kind, eid, data = "message", None, []
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    eid = int(value)
        except (OSError, ValueError):
            pass
        self.q.put(None)

    def wait_for(self, pred: Callable[[str, Any], bool], timeout: float = 10.0) -> tuple[str, int | None, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                ev = self.q.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(f"no such event within {timeout}s; got {[e[:2] for e in self.events]}") from None
            if ev is None:
                raise AssertionError(f"the event stream ended; got {[e[:2] for e in self.events]}")
            self.events.append(ev)
            if pred(ev[0], ev[2]):
                return ev

    def seen_or_wait(self, pred: Callable[[str, Any], bool], timeout: float = 10.0) -> tuple[str, int | None, Any]:
        """The latest event already read that matches, else the next one to come (events of one
        kind may come before those of another that a test waited for first: a busy machine may
        schedule the SMSC's bookkeeping of an MO after the replies to it)."""
        for ev in reversed(self.events):
            if pred(ev[0], ev[2]):
                return ev
        return self.wait_for(pred, timeout)

    def ended(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self.q.get(timeout=left) is None:
                    return True
            except queue.Empty:
                return False
        return False


def is_item(event: str, data: Any, **want: Any) -> bool:
    return event == "item" and all(data.get(k) == v for k, v in want.items())


@pytest.fixture
def sim() -> Iterator[SimSmsc]:
    s = SimSmsc(SimulatorSettings(host="127.0.0.1", smpp_port=0, control_port=0, redeliver_seconds=0.2),
                SmscSettings(system_id="smsbot", password="secret"), response_timeout=1.0).start()
    yield s
    s.stop()


# -- the page's files and the control API additions ---------------------------------------------------
def test_page_and_its_files_are_served_from_the_package(sim: SimSmsc):
    code, headers, body = http(sim.control_url + "/")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert '<script src="/static/app.js"' in page and 'href="/static/style.css"' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere (no CDN, no web fonts)
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        code, headers, body = http(f"{sim.control_url}/static/{name}")
        assert code == 200 and headers["Content-Type"].startswith(ctype) and body
        assert b"http://" not in body and b"https://" not in body and b"@import" not in body
    for bad in ("/static/nope.js", "/static/..%2fcontrol.py", "/static/.hidden.js", "/static/events.py"):
        code, _, body = http(sim.control_url + bad)
        assert code == 404, bad
        assert "error" in json.loads(body)
    assert http(sim.control_url + "/nothing")[0] == 404  # the JSON API's 404 as before


def test_cross_origin_posts_are_refused(sim: SimSmsc):
    mo = {"from": MSISDN, "to": "10086", "text": "hi"}
    code, _, body = http(sim.control_url + "/mo", "POST", mo, {"Origin": "http://evil.example"})
    assert code == 403 and "cross-origin" in json.loads(body)["error"]
    code, _, body = http(sim.control_url + "/faults", "POST", {"throttle_first": 5}, {"Origin": "null"})
    assert code == 403 and sim.faults.describe()["throttle_first"] == 0
    assert http(sim.control_url + "/mo", "POST", mo, {"Origin": sim.control_url})[0] == 202  # the page itself
    assert http(sim.control_url + "/mo", "POST", mo)[0] == 202  # curl, the handset CLI, tests


def test_keep_alive_connection_survives_routes_that_ignore_their_body(sim: SimSmsc):
    """A browser sends every request on one kept-alive connection: a body a route does not use
    (POST /drop {}), or one refused before routing (403, 404), must not be read as the next request."""
    conn = HTTPConnection("127.0.0.1", sim.control_port, timeout=10)
    mo = json.dumps({"from": MSISDN, "to": "10086", "text": "hi"})
    for method, path, body, headers, want in (
        ("POST", "/drop", "{}", {}, 200),
        ("POST", "/mo", mo, {}, 202),
        ("POST", "/message_ids/restart", "{}", {}, 200),
        ("POST", "/mo", mo, {"Origin": "http://evil.example"}, 403),
        ("POST", "/nothing", "{}", {}, 404),
        ("GET", "/healthz", None, {}, 200),
        ("POST", "/mo", mo, {"Origin": f"http://127.0.0.1:{sim.control_port}"}, 202),
    ):
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        assert (path, resp.status) == (path, want), resp.read()
        resp.read()
    conn.close()
    assert sim.stats()["mo_injected"] == 2


def test_event_stream_hello_items_faults_and_resume(sim: SimSmsc):
    stream = EventStream(sim.control_url)
    kind, hello_id, hello = stream.wait_for(lambda k, d: k == "hello")
    assert hello["reset"] is True and hello["instance"] == sim.events.instance and hello["binds"] == []
    assert {"faults", "profile", "short_codes", "msisdns", "stats", "smpp_port"} <= set(hello)
    # an MO queued without a bind: the item says so, with the options asked
    code, _, _ = http(sim.control_url + "/mo", "POST", {"from": MSISDN, "to": "10086", "text": "你好", "data_coding": 8,
                                                       "duplicate": True, "tlvs": {"0x1401": "0a0b"}})
    assert code == 202
    _, mo_id, mo = stream.wait_for(lambda k, d: is_item(k, d, kind="mo", waiting_bind=True))
    assert mo["text"] == "你好" and mo["peer"] == "10086" and mo["state"] == "queued"
    assert mo["options"] == {"data_coding": 8, "duplicate": True, "tlvs": {"0x1401": "0a0b"}}
    http(sim.control_url + "/faults", "POST", {"throttle_first": 2})
    _, faults_id, plan = stream.wait_for(lambda k, d: k == "faults")
    assert plan["throttle_first"] == 2 and faults_id > mo_id
    http(sim.control_url + "/profile", "POST", {"receipt_outcomes": {MSISDN: "UNDELIV:034"}})
    stream.wait_for(lambda k, d: k == "profile" and d["flags"]["receipt_outcomes"] == {MSISDN: "UNDELIV:034"})
    # a client coming back with Last-Event-ID gets what it missed, then goes on live
    again = EventStream(sim.control_url, last_event_id=faults_id - 1)
    _, _, hello2 = again.wait_for(lambda k, d: k == "hello")
    assert hello2["reset"] is False
    again.wait_for(lambda k, d: k == "faults")
    again.wait_for(lambda k, d: k == "profile")
    # from another simulator run (an id it never gave): a reset
    later = EventStream(sim.control_url, last_event_id=10**9)
    assert later.wait_for(lambda k, d: k == "hello")[2]["reset"] is True
    # the conversation view has the MO
    conv = get_json(f"{sim.control_url}/web/conversation/{MSISDN}")
    assert [i["id"] for i in conv["items"]] == [mo["id"]] and conv["seq"] >= faults_id
    assert get_json(sim.control_url + "/web/state")["msisdns"] == [MSISDN]
    # stopping the simulator ends every stream at once
    t0 = time.monotonic()
    sim.stop()
    assert stream.ended(5) and again.ended(5) and later.ended(5)
    assert time.monotonic() - t0 < 5


def test_events_join_receipts_to_whole_mts_and_report_gaps():
    ev = SimEvents(keep_items=50, keep_events=20)

    class Msg:  # a StoredMessage as the mailbox has it
        def __init__(self, mid: str, ids: list[str], t: float):
            self.to, self.sender, self.id, self.text, self.parts = MSISDN, "10086", mid, "x", len(ids)
            self.data_coding, self.received_at, self.message_ids = 8, t, ids

    class Job:
        def __init__(self, jid: str, state: str):
            self.id, self.kind, self.state, self.last_error = jid, "receipt", state, ""

    # part 1's receipt is queued before part 2 arrives, part 2's after the message is whole
    ev.receipt_queued("r1", "00000001", MSISDN, "DELIVRD", "000")
    first = Msg("00000001", ["00000001", "00000002"], 1.0)
    ev.mt_stored(first, receipt_asked=True)
    ev.receipt_queued("r2", "00000002", MSISDN, "DELIVRD", "000")
    ev.job_changed(Job("r1", "delivered"))
    ev.job_changed(Job("r2", "queued"))
    (mt,) = ev.conversation(MSISDN)["items"]
    assert [(r["message_id"], r["state"]) for r in mt["receipts"]] == [("00000001", "delivered"), ("00000002", "queued")]
    assert mt["inbox"] == "waiting" and mt["parts"] == 2
    ev.picked_up(MSISDN, [first])
    assert ev.conversation(MSISDN)["items"][0]["inbox"] == "picked up"
    # a reused message id (profile message_id_cycle): the receipt goes to the newer message
    ev.receipt_queued("r3", "00000001", MSISDN, "UNDELIV", "034")
    ev.mt_stored(Msg("00000001", ["00000001"], 2.0), receipt_asked=True)
    old, new = ev.conversation(MSISDN)["items"]
    assert [r["stat"] for r in old["receipts"]] == ["DELIVRD", "DELIVRD"]
    assert [(r["stat"], r["err"]) for r in new["receipts"]] == [("UNDELIV", "034")]
    assert [e[0] for e in ev.wait(0, 0)] == list(range(1, ev.seq + 1))
    for i in range(60):  # items and events are bounded
        ev.mt_stored(Msg(f"{i + 100:08x}", [f"{i + 100:08x}"], 3.0 + i), receipt_asked=True)
    assert len(ev.conversation(MSISDN)["items"]) == 50
    # a reader further behind than the ring keeps is told so; one up to date waits
    seq = ev.seq
    assert ev.wait(seq - 21, 0) is None  # the 20 kept are seq - 19 .. seq
    assert [e[0] for e in ev.wait(seq - 20, 0)] == list(range(seq - 19, seq + 1))
    t0 = time.monotonic()
    assert ev.wait(seq, 0.2) == [] and time.monotonic() - t0 >= 0.15
    ev.close()
    assert ev.wait(seq, 10) == []


# -- with the bot: what the stream and the conversation view say, and that watching steals nothing ----
def test_watching_does_not_pick_up_and_receipts_are_joined(make_world: Callable[..., World]):
    world = make_world(**{"smsc.registered_delivery": 1})
    world.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    stream = EventStream(world.sim.control_url)
    _, _, hello = stream.wait_for(lambda k, d: k == "hello")
    assert [b["system_id"] for b in hello["binds"]] == ["smsbot"] and hello["short_codes"] == ["10086"]
    phone = world.handset(MSISDN)
    phone.send("0000")
    stream.wait_for(lambda k, d: is_item(k, d, kind="mo", state="delivered", text="0000"))
    _, _, mt = stream.seen_or_wait(lambda k, d: is_item(k, d, kind="mt") and any(
        r["state"] == "delivered" for r in d["receipts"]) and len(d["receipts"]) == d["parts"]
        and all(r["state"] == "delivered" for r in d["receipts"]))
    assert "1. 视频会员包月" in mt["text"] and mt["inbox"] == "waiting"
    assert {r["stat"] for r in mt["receipts"]} == {"DELIVRD"}
    # the page showed it; the handset still gets it, once, and the view learns it was picked up
    (got,) = phone.expect(1)
    assert got["text"] == mt["text"]
    stream.wait_for(lambda k, d: is_item(k, d, id=mt["id"], inbox="picked up"))
    assert phone.quiet() == []
    # a dropped link: the bind closes and the bot's new bind opens
    http(world.sim.control_url + "/drop", "POST", {})
    stream.wait_for(lambda k, d: k == "bind" and d["event"] == "closed")
    stream.seen_or_wait(lambda k, d: k == "note" and "dropped 1" in d["text"])  # the note may come first
    stream.seen_or_wait(lambda k, d: k == "bind" and d["event"] == "opened" and len(d["binds"]) == 1)
    # a fault shows as a submit event: the bot's next submit is throttled, retried, delivered
    http(world.sim.control_url + "/faults", "POST", {"throttle_first": 1})
    phone.send("2")
    _, _, refused = stream.wait_for(lambda k, d: k == "submit")
    assert refused["status"] == 0x58 and refused["to"] == MSISDN and refused["n"] == 1
    assert "您已成功退订彩铃音乐包" in phone.expect(1)[0]["text"]


# -- in a real browser ---------------------------------------------------------------------------------
CJK_DRAWN = """
const font = getComputedStyle(arguments[0]).font;
const draw = (ch) => {
  const c = document.createElement("canvas");
  c.width = c.height = 40;
  const g = c.getContext("2d");
  g.font = font;
  g.fillText(ch, 4, 30);
  return Array.from(g.getImageData(0, 0, 40, 40).data).join(",");
};
return draw("退") !== draw("订") && draw("退") !== draw("\\u{10FFFD}");
"""


def test_web_handsets_in_chromium(make_world: Callable[..., World], browser: Any, tmp_path: Path):
    world = make_world(**{"smsc.registered_delivery": 1})
    world.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    world.subscribe(OTHER, "VIDEO", "GAME", "WEATHER")
    browser.get(world.sim.control_url + "/")
    page = Page(browser, tmp_path)
    page.wait("the live stream", lambda: page.one("#live").get_attribute("data-state") == "live")
    page.wait("the bot's bind listed", lambda: "transceiver" in page.one("#binds").text and "smsbot" in page.one("#binds").text)
    assert page.one("#bind-chip").text == "1 bind open"

    # the first handset: 0000 -> the numbered menu, in Chinese, with its receipt
    one = page.handset(MSISDN)
    assert page.one(".shortcode", one).get_attribute("value") == "10086"
    page.send(one, "0000")
    menu = page.mt_with(one, "1. 视频会员包月 15元/月")
    assert "2. 彩铃音乐包 5元/月" in menu.text and "3. 手机早晚报 3元/月" in menu.text
    page.wait("the MO marked delivered", lambda: page.one(".msg.mo .state", one).get_attribute("data-state") == "delivered")
    receipt = page.wait("the menu's receipt acknowledged", lambda: (
        r := page.one(".receipt", page.mt_with(one, "1. 视频会员包月"))).get_attribute("data-state") == "delivered" and r)
    assert receipt.text == "✓✓ DELIVRD"
    assert page.one(".inbox", menu).get_attribute("data-state") == "waiting"  # watching picked nothing up
    # 2 cancels the second item
    page.send(one, "2")
    confirm = page.mt_with(one, "您已成功退订彩铃音乐包")
    assert [e.text for e in page.all(".msg.mo .text", one)] == ["0000", "2"]

    # a second handset, with MO options: UCS-2, and the bot's deliver_sm_resp lost with the link
    # (the SMSC delivers the MO again on the next bind; the bot answers it once)
    page.one("#add-handset").click()
    two = page.handset(OTHER)
    page.one(".options > summary", two).click()
    Select(page.one(".opt-encoding", two)).select_by_value("8")
    page.one(".opt-lost-resp", two).click()
    assert "UCS-2" in page.one(".opt-summary", two).text
    Select(page.one(".opt-receipt", two)).select_by_value("UNDELIV:034")
    page.wait("the receipt outcome set", lambda: world.sim.behaviour.receipt_outcomes == {OTHER: "UNDELIV:034"})
    page.send(two, "0000")
    menu2 = page.mt_with(two, "1. 视频会员包月 15元/月")
    mo_tags = page.wait("the MO's option tags", lambda: [t.text for t in page.all(".msg.mo .tag", two)])
    assert "UCS-2" in mo_tags and "lost resp" in mo_tags
    mo_id = page.one(".msg.mo", two).get_attribute("data-id")
    page.wait("the MO shown redelivered", lambda: "redelivered 1×" in page.one(".msg.mo .state", two).text)
    status = world.sim.mo_status(mo_id)
    assert status["state"] == "delivered" and status["redeliveries"] == 1
    page.wait("the link drop in the log", lambda: any("closed" in li.text for li in page.all("#log li")))
    wire = pdu.decode_deliver_sm(0, bytes.fromhex(status["wire"][0])[16:])
    assert wire.data_coding == 8 and wire.short_message == "0000".encode("utf-16-be")
    page.wait("the UNDELIV receipt", lambda: page.one(".receipt", menu2).get_attribute("data-state") == "failed")
    assert page.one(".receipt", menu2).text == "✗ UNDELIV:034"

    # a fault mode from the side panel: the bot's next submit_sm is throttled, retried, delivered
    page.one(".opt-lost-resp", two).click()
    form = page.one("#faults")
    page.one("input[name=throttle_first]", form).send_keys("1")
    page.one("#faults-apply").click()
    page.wait("the fault plan applied", lambda: world.sim.faults.describe()["throttle_first"] == 1)
    page.wait("the plan shown", lambda: "throttle_first=1" in page.one("#faults-active").text)
    page.send(two, "1，3")
    page.mt_with(two, "您已成功退订视频会员包月")
    page.wait("the throttled submit in the log", lambda: any(
        "0x58 ESME_RTHROTTLED" in li.text for li in page.all("#log li")))
    assert world.sim.stats()["submits_throttled"] == 1
    page.wait("both submits counted", lambda: "· 2 submits judged" in page.one("#faults-active").text)
    # the redelivered 0000 was not applied again; its menu went once, or twice when the first had
    # gone out before the redelivery came (a copy, counted: README "Duplicates and redeliveries")
    menus = sum("1. 视频会员包月" in t for t in page.mt_texts(two))
    assert menus == 1 + world.bot.metrics.reply_copies._value.get() <= 2

    # a CLI handset on the first MSISDN still gets both messages (the page only watched), and the
    # page shows them picked up, live
    got = world.handset(MSISDN).expect(2)
    assert [m["text"] for m in got] == [page.one(".bubble", menu).text, page.one(".bubble", confirm).text]
    page.wait("picked up shown", lambda: [e.get_attribute("data-state") for e in page.all(".msg.mt .inbox", one)]
              == ["picked up", "picked up"])

    # the Chinese is drawn with real glyphs, not as boxes: two different characters in the bubble's
    # font give different pixels (without a CJK font both are the same "missing glyph" box)
    assert browser.execute_script(CJK_DRAWN, page.one(".msg.mt .bubble", one)), \
        "Chinese renders as empty boxes: install a CJK font (Debian: fonts-noto-cjk)"

    # scrolled to the top, no focus ring, and two frames painted since (not a fixed wait)
    browser.execute_async_script("const done = arguments[arguments.length - 1]; window.scrollTo(0, 0); "
                                 "document.activeElement.blur(); requestAnimationFrame(() => requestAnimationFrame(done))")
    shot = tmp_path / "handsets.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    target = os.environ.get("SMSBOT_WEB_SCREENSHOT")
    if target:
        dest = Path(target) if Path(target).is_absolute() else REPO / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)
    page.one("#faults-clear").click()
    page.wait("the faults cleared", lambda: world.sim.faults.describe()["throttle_first"] == 0)
    page.wait("no fault shown", lambda: page.one("#faults-active").text.startswith("none"))

    # a reload keeps the handsets (localStorage) and shows the conversation again from the simulator
    browser.refresh()
    page.wait("the live stream again", lambda: page.one("#live").get_attribute("data-state") == "live")
    again = page.handset(OTHER)
    page.mt_with(again, "您已成功退订视频会员包月")
    assert page.one(".opt-encoding", again).get_attribute("value") == "8"
    # removing a handset
    page.one(".remove", again).click()
    page.wait("the handset removed", lambda: len(page.all("#handsets .handset")) == 1)


def test_page_says_why_no_receipt_shows_what_came_before_and_times_in_the_bots_zone(
        make_world: Callable[..., World], browser: Any, tmp_path: Path):
    """Issue 19: with the default registered_delivery 0 the page says why there is no receipt and
    how to get one; a page opened after messages were exchanged shows them in its log too (not
    "Nothing yet"); every time on the page is in billing.timezone with its offset, not the
    browser's zone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    world = make_world(**{"billing.timezone": "Asia/Kolkata"})  # +05:30; smsc.registered_delivery: 0
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    assert "1. 视频会员包月" in world.handset(MSISDN).ask("0000")  # before the page opens
    browser.get(world.sim.control_url + "/")
    page = Page(browser, tmp_path)
    page.wait("the live stream", lambda: page.one("#live").get_attribute("data-state") == "live")
    assert browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone") != "Asia/Kolkata"

    one = page.handset(MSISDN)
    menu = page.mt_with(one, "1. 视频会员包月")
    log = page.wait("the earlier MO and MT in the log", lambda: (
        texts := [li.text for li in page.all("#log li")]) and any("MT 10086 → " + MSISDN in t for t in texts) and texts)
    assert any(f"MO {MSISDN} → 10086: “0000”" in t for t in log), log
    assert any("bind #" in t and "opened" in t for t in log), log

    receipt = page.one(".receipt", menu)
    assert receipt.text == "no receipt asked" and "registered_delivery: 0" in receipt.get_attribute("title")
    hint = page.one("#receipt-hint")
    assert hint.is_displayed()
    assert "smsc.registered_delivery: 1" in hint.text and "SMSBOT_SMSC_REGISTERED_DELIVERY=1" in hint.text

    item = next(i for i in get_json(f"{world.sim.control_url}/web/conversation/{MSISDN}")["items"] if i["kind"] == "mt")
    assert page.one(".meta time", menu).text == datetime.fromtimestamp(item["t"], ZoneInfo("Asia/Kolkata")).strftime("%H:%M:%S +05:30")
    times = [t.text for t in page.all("time")]
    assert times and all(t.endswith(" +05:30") for t in times), times
    assert page.one(".clock", one).text.endswith(" +05:30")
    # a fixed offset and UTC, as billing.timezone may name them
    assert browser.execute_script('state.zone = "-03:30"; return clock(0, true)') == "1969-12-31 20:30:00 -03:30"
    assert browser.execute_script('state.zone = "UTC"; return clock(0, true)') == "1970-01-01 00:00:00 +00:00"
    browser.execute_script('state.zone = "Asia/Kolkata"')

    browser.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
    assert browser.save_screenshot(str(tmp_path / "no-receipts.png"))  # to look at: pytest --basetemp=DIR
