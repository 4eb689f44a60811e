"""smsbot over CMPP 3.0 and 2.0 end to end: the bot (`smsc.protocol: cmpp3 | cmpp2`) connects to the
simulated ISMG (`smsbot.simulator.ismg.SimIsmg`) over TCP on 127.0.0.1, and a subscriber's MOs
(CMPP_DELIVER) come back as replies (CMPP_SUBMIT) in the ISMG's mailbox — through the same pipeline,
dispatch, Lua steps and delivery as SMPP."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from commands.orders.events import write_order
from smsbot import admin, billing, cmpp
from smsbot.app import Bot
from smsbot.cmpp import FeeType
from smsbot.periods import zone
from smsbot.simulator.ismg import SimIsmg
from tests.billing_steps import mid_last_month
from tests.cmpp_sp import CMPP_SERVICES, SECRET, SP_ID
from tests.helpers import wait_until
from tests.redis_proxy import CuttingProxy

MSISDN = "13800138000"
VERSIONS = [pytest.param("cmpp3", 0x30, id="cmpp3"), pytest.param("cmpp2", 0x20, id="cmpp2")]


class CmppWorld:
    def __init__(self, ismg: SimIsmg, bot: Bot):
        self.ismg = ismg
        self.bot = bot

    def subscribe(self, msisdn: str, *codes: str, at_ms: int | None = None) -> None:
        for code in codes:
            assert admin.subscribe(self.bot.settings, msisdn, code, store=self.bot.store, at_ms=at_ms) in ("added", "exists")

    def send(self, msisdn: str, text: str, **kw: Any) -> dict[str, Any]:
        job = self.ismg.inject_mo(msisdn, "10086", text, **kw)
        return self.ismg.wait_mo(job["id"], timeout=10) or {}

    def replies(self, msisdn: str, n: int = 1, timeout: float = 10.0) -> list[str]:
        got: list[str] = []
        wait_until(lambda: bool(got.extend(m.text for m in self.ismg.mailbox.take(msisdn))) or len(got) >= n, timeout)
        assert len(got) >= n, f"expected {n} replies for {msisdn}, got {got}"
        return got

    def ask(self, msisdn: str, text: str, **kw: Any) -> str:
        state = self.send(msisdn, text, **kw)
        assert state.get("state") == "delivered", state
        return "\n".join(self.replies(msisdn))


@pytest.fixture
def make_cmpp_world(make_settings) -> Iterator[Callable[..., CmppWorld]]:
    worlds: list[CmppWorld] = []

    def make(protocol: str = "cmpp3", ismg_version: int = 0x30, secret: str = SECRET, clock: Callable[[], float] = time.time,
             **overrides: Any) -> CmppWorld:
        """`clock`: the bot's time (the MO scripts' "now")."""
        ismg = SimIsmg(SP_ID, SECRET, version=ismg_version, response_timeout=3.0, redeliver_seconds=0.3).start()
        settings = make_settings(**{"smsc.protocol": protocol, "smsc.port": ismg.port,
                                    "smsc.cmpp": {"sp_id": SP_ID, "secret": secret, "services": CMPP_SERVICES},
                                    **overrides})
        w = CmppWorld(ismg, Bot(settings, clock=clock))
        worlds.append(w)
        w.bot.start()
        return w

    yield make
    for w in worlds:
        w.bot.stop()
        w.ismg.stop()


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_connect_menu_and_numeric_cancel(make_cmpp_world, protocol, version):
    w = make_cmpp_world(protocol, version)
    assert w.bot.wait_bound(10), "the bot did not connect to the ISMG"
    assert [c["version"] for c in w.ismg.connections()] == [version]
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    menu = w.ask(MSISDN, "0000")
    assert "视频会员包月" in menu and "彩铃音乐包" in menu
    assert "您已成功退订彩铃音乐包" in w.ask(MSISDN, "2")
    active = w.ask(MSISDN, "0000")
    assert "视频会员包月" in active and "彩铃音乐包" not in active  # the cancel was applied
    log = w.ismg.submit_log()
    assert log and all(e["result"] == 0 and e["version"] == version for e in log)
    assert {(e["msg_src"], e["src_id"], e["fee_type"], e["service_id"]) for e in log} == {
        (SP_ID, "10086", FeeType.FREE.value, "HELP")}  # menus and answers are free
    assert w.ismg.stats().get("delivers_rejected", 0) == 0


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_a_long_ucs2_and_a_gbk_mo_are_read(make_cmpp_world, protocol, version):
    w = make_cmpp_world(protocol, version)
    assert w.bot.wait_bound(10)
    w.subscribe(MSISDN, "VIDEO")
    assert "视频会员包月" in w.ask(MSISDN, "0000", msg_fmt=15)  # GBK
    long_text = "查询" * 80  # 160 characters, 320 octets: three UCS-2 parts behind a UDH
    state = w.send(MSISDN, long_text)
    assert state["state"] == "delivered" and state["parts"] == 3
    [answer] = w.replies(MSISDN)
    before = len(w.ismg.submit_log())
    assert "视频会员包月" in w.ask(MSISDN, "0000")  # the subscriber's replies go in order: any to a part came first
    assert len(w.ismg.submit_log()) == before + 1 and w.ismg.mailbox.take(MSISDN) == []
    assert answer  # one answer to the whole message, none to its parts


def test_a_wrong_secret_is_refused_by_the_gateway(make_cmpp_world):
    """The ISMG knows another secret: it refuses our CONNECT (Status 3); the bot keeps trying, never bound."""
    w = make_cmpp_world(secret="not-the-secret")
    assert not w.bot.wait_bound(1.5)
    assert w.ismg.stats().get("connects", 0) == 0 and w.ismg.connections() == []


class Impostor:
    """A 'gateway' that accepts any CONNECT (Status 0) without knowing the secret: its
    AuthenticatorISMG cannot check. It keeps what each connection sent after CONNECT_RESP."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connects = 0
        self.after: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(2)
                framer = cmpp.Framer()
                frames: list[cmpp.Frame] = []
                while not frames:
                    data = sock.recv(4096)
                    if not data:
                        break
                    frames = framer.feed(data)
                if not frames:
                    continue
                self.connects += 1
                sock.sendall(cmpp.encode(cmpp.ConnectResp(0, bytes(range(16)), 0x30), frames[0].sequence, 0x30))
                try:
                    self.after.append(sock.recv(4096))  # b"": the SP closed without a word
                except OSError:
                    self.after.append(b"?")

    def close(self) -> None:
        self.listener.close()


def test_a_gateway_that_fails_authenticator_ismg_is_refused(make_settings):
    impostor = Impostor()
    bot = Bot(make_settings(**{"smsc.protocol": "cmpp3", "smsc.port": impostor.port,
                               "smsc.cmpp": {"sp_id": SP_ID, "secret": SECRET, "services": CMPP_SERVICES}}))
    try:
        bot.start()
        assert wait_until(lambda: len(impostor.after) >= 2, 10)  # it tried, refused, and tried again
        assert not bot.transport.bound.is_set()
        assert set(impostor.after[:2]) == {b""}  # nothing sent to it after its CONNECT_RESP
    finally:
        bot.stop()
        impostor.close()


def test_a_2_0_gateway_refuses_3_0(make_cmpp_world):
    w = make_cmpp_world("cmpp3", 0x20)
    assert not w.bot.wait_bound(1.5)
    w2 = make_cmpp_world("cmpp2", 0x20)
    assert w2.bot.wait_bound(10)


def test_the_fee_mapping_is_checked_at_start(redis_server, tmp_path):
    """Every catalogue service needs its Service_Id under CMPP: one line per problem, naming the key."""
    from smsbot import config
    from tests.conftest import base_config

    raw = base_config(redis_server.url, tmp_path / "var", **{
        "smsc.protocol": "cmpp2", "smsc.cmpp": {"services": {"VIDEO": {"service_id": "MVIDEO"}, "NOPE": {"service_id": "X"}}}})
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    lines = e.value.lines()
    assert "smsc.cmpp.services.MUSIC: CMPP needs the Service_Id of service MUSIC" in lines[0]
    assert any(line.startswith("smsc.cmpp.services.NOPE: not a service of the catalogue") for line in lines)
    assert all("\n" not in line for line in lines)
    raw["smsc"]["protocol"] = "smpp"  # SMPP needs none of it
    assert config.from_dict(raw).smsc.submit_window == raw["smsc"]["window"]


# -- (b) receipts, the charge reminder with its fee, data alerts, CXLL, CXZD, TS --------------------------
def submits_to(w: CmppWorld, msisdn: str) -> list[dict[str, Any]]:
    return [e for e in w.ismg.submit_log() if e["to"] == [msisdn]]


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_receipts_are_matched_to_the_sent_part_by_msg_id(make_cmpp_world, protocol, version):
    w = make_cmpp_world(protocol, version, **{"smsc.registered_delivery": 1})
    assert w.bot.wait_bound(10)
    w.ismg.report_stats["13900139000"] = "UNDELIV"
    w.subscribe(MSISDN, "VIDEO")
    state = w.send(MSISDN, "0000")
    assert state["state"] == "delivered"
    [menu] = wait_for_mailbox(w, MSISDN)
    [mid] = menu.message_ids  # the Msg_Id the SUBMIT_RESP gave, as smsbot writes it (16 hex digits)
    store = w.bot.store
    assert wait_until(lambda: [r.get("state") for r in store.mt_records(mid)] == ["DELIVRD"], 10), store.mt_records(mid)
    [record] = store.mt_records(mid)
    assert record["to"] == MSISDN and record["tpl"] == "subscriptions.menu"
    w.send("13900139000", "CXLL")
    [answer] = wait_for_mailbox(w, "13900139000")
    assert wait_until(lambda: [r.get("state") for r in store.mt_records(answer.message_ids[0])] == ["UNDELIV"], 10)
    assert [e["registered_delivery"] for e in w.ismg.submit_log()] == [1, 1]
    assert wait_until(lambda: w.ismg.stats().get("reports_delivered") == 2, 10)  # each answered with Result 0
    assert w.ismg.stats().get("delivers_rejected", 0) == 0 and w.ismg.stats().get("redeliveries", 0) == 0


def wait_for_mailbox(w: CmppWorld, msisdn: str, n: int = 1) -> list[Any]:
    got: list[Any] = []
    assert wait_until(lambda: bool(got.extend(w.ismg.mailbox.take(msisdn))) or len(got) >= n, 10), got
    return got


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_charge_reminder_carries_the_catalogue_fee_and_td_cancels_it(make_cmpp_world, protocol, version):
    w = make_cmpp_world(protocol, version)
    assert w.bot.wait_bound(10)
    write_order(w.bot.settings, w.bot.store.redis, MSISDN, "VIDEO", int(time.time() * 1000), f"cmpp-{protocol}")
    [reminder] = wait_for_mailbox(w, MSISDN)
    assert "扣费提醒" in reminder.text and "视频会员包月" in reminder.text and "回复TD" in reminder.text
    charged, *rest = parts = submits_to(w, MSISDN)
    assert [p["pk_number"] for p in parts] == list(range(1, charged["pk_total"] + 1))
    assert (charged["fee_type"], charged["fee_code"], charged["service_id"], charged["fee_user_type"]) == (
        FeeType.MONTHLY.value, "001500", "MVIDEO", 0)  # monthly, 15 yuan in fen, the service's Service_Id
    assert all((p["fee_type"], p["service_id"]) == (FeeType.FREE.value, "MVIDEO") for p in rest)  # charged once
    assert "您已成功退订视频会员包月" in w.ask(MSISDN, "TD")
    states = {k.decode(): json.loads(v)["state"] for k, v in w.bot.store.redis.hgetall(w.bot.store.keys.subs(MSISDN)).items()}
    assert states == {"VIDEO": "cancelled"}
    answer = submits_to(w, MSISDN)[-1]
    assert (answer["fee_type"], answer["fee_code"], answer["service_id"]) == (FeeType.FREE.value, "000000", "HELP")


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_data_alert_cxll_cxzd_and_ts(make_cmpp_world, protocol, version):
    from commands import usage

    w = make_cmpp_world(protocol, version)
    assert w.bot.wait_bound(10)
    store = w.bot.store
    store.redis.xadd(store.keys.usage_events(), usage.event_fields(
        MSISDN, int(1015 * usage.MB), usage.current_cycle(w.bot.settings), None, source="test"))
    [alert] = wait_for_mailbox(w, MSISDN)
    assert "剩余流量9.0MB" in alert.text and "已使用1015.0MB" in alert.text
    assert "已使用流量1015.0MB" in w.ask(MSISDN, "CXLL")
    assert "暂无增值业务扣费记录" in w.ask(MSISDN, "CXZD")
    opened = w.ask(MSISDN, "TS 上个月账单多扣了5元")
    number = re.search(r"投诉编号(\d+)", opened)
    assert number and "TSCX" in opened
    assert f"编号{number.group(1)}" in w.ask(MSISDN, "TSCX")
    assert {e["fee_type"] for e in submits_to(w, MSISDN)} == {FeeType.FREE.value}  # none of these charge


def test_the_secret_comes_from_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    from smsbot import config

    monkeypatch.setenv("SMSBOT_SMSC_PROTOCOL", "cmpp2")
    monkeypatch.setenv("SMSBOT_SMSC_CMPP_SECRET", "from-env-s3cret")
    s = config.load(Path(__file__).resolve().parent.parent / "config.yaml")
    assert (s.smsc.protocol.value, s.smsc.cmpp.secret) == ("cmpp2", "from-env-s3cret")
    assert "from-env-s3cret" not in repr(s) and "from-env-s3cret" not in repr(s.smsc)


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_a_lost_redis_answer_is_try_again_and_the_redelivery_is_applied_once(make_cmpp_world, redis_server, protocol,
                                                                              version):
    """Ack after store over CMPP: Redis applied the cancel but the bot never read the answer (a proxy
    cut it), so the DELIVER gets Result 8; the ISMG delivers it again with the same Msg_Id, which the
    redelivery guard knows: nothing is applied twice and the stranded reply goes out once."""
    proxy = CuttingProxy(str(redis_server.socket))
    try:
        w = make_cmpp_world(protocol, version, **{"redis.url": f"redis://127.0.0.1:{proxy.port}"})
        assert w.bot.wait_bound(10)
        w.subscribe(MSISDN, "VIDEO", "MUSIC")
        assert "彩铃音乐包" in w.ask(MSISDN, "0000")
        proxy.arm(MSISDN.encode())
        state = w.send(MSISDN, "2")
        assert proxy.cuts == 1, "the proxy cut the connection after Redis answered"
        assert state["state"] == "delivered" and state["redeliveries"] >= 1, state  # Result 8 first, then taken
        assert "您已成功退订彩铃音乐包" in "\n".join(w.replies(MSISDN))
        menu = w.ask(MSISDN, "0000")  # the subscriber's replies go in order: a copy of the answer would come first
        assert "视频会员包月" in menu and "彩铃音乐包" not in menu and "退订彩铃" not in menu
        store = w.bot.store
        cancels = [1 for _id, f in store.redis.xrange(store.keys.subscriber(MSISDN).audit)
                   if f[b"msisdn"].decode() == MSISDN and f[b"new"] == b"cancelled"]
        assert cancels == [1]
    finally:
        proxy.close()


@pytest.mark.parametrize(("protocol", "version"), VERSIONS)
def test_cxzd_lists_this_months_charges(make_cmpp_world, make_settings, protocol, version):
    """A monthly charge made by a billing run is on the bill CXZD sends back, as over SMPP (the bot's
    clock in the middle of last month, so the month has time behind "now" whatever the calendar)."""
    clock = mid_last_month(zone(make_settings().billing.timezone))
    w = make_cmpp_world(protocol, version, clock=clock)
    assert w.bot.wait_bound(10)
    now_ms = int(clock() * 1000)
    w.subscribe(MSISDN, "NEWS", at_ms=now_ms - 86400_000)
    assert billing.run(w.bot.settings, w.bot.store, now_ms).charged == 1
    bill = w.ask(MSISDN, "CXZD")
    assert "手机早晚报 3.00元" in bill and "合计：3.00元" in bill, bill
