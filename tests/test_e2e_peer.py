"""smsbot against an SMSC that neither smpplib nor smsbot wrote: `smpp34`'s server.

`smpp34` (PyPI; a Rust/tokio SMPP 3.4 implementation with an asyncio binding) does the framing,
binds, enquire_link, sequence numbers and PDU codec on the SMSC side. `PeerSmsc` below is only the
application around it: it accepts submit_sm (message ids of its own), joins concatenated parts,
keeps whole MTs per MSISDN, sends a delivery receipt (receipted_message_id + message_state TLVs and
the usual text) when one is asked for, and sends MOs as deliver_sm like most SMSCs do: without a
user_message_reference. The bot is `smsbot.app.Bot` bound to it over loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import smpp34

from smsbot import admin, config, queue_lag
from smsbot.app import Bot
from .helpers import wait_until

MSISDN = "13800138000"
CODE = "10086"
MENU_HEAD = "尊敬的客户，您已订购的包月业务如下："


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _split_udh(data: bytes) -> tuple[bytes, tuple[int, int, int] | None]:
    """(user data, (ref, total, seq) of a concatenation IE or None): a parser of this test's own."""
    udhl = data[0]
    p, end = 1, 1 + udhl
    seg = None
    while p + 2 <= end:
        iei, iel = data[p], data[p + 1]
        v = data[p + 2 : p + 2 + iel]
        if iei == 0x00 and iel == 3:
            seg = (v[0], v[1], v[2])
        elif iei == 0x08 and iel == 4:
            seg = ((v[0] << 8) | v[1], v[2], v[3])
        p += 2 + iel
    return data[end:], seg


def _handset(addr: str, ton: int) -> str:
    """The handset an MT is for, read as this SMSC's network (country code 86) reads it: under TON
    1 (international) only 86… is one of its handsets; national digits under TON 1 are abroad."""
    if ton == 1:
        return addr[2:] if addr.startswith("86") else "+" + addr
    return addr


def _text(dc: int, data: bytes) -> str:
    if dc == 8:
        return data.decode("utf-16-be")
    return data.decode("latin-1")  # the bot's GSM-7 replies here are plain ASCII


class PeerSmsc:
    """An SMSC application on smpp34's `Server`, its asyncio loop in a thread of its own."""

    def __init__(self, send_receipts: bool = True):
        self.port = _free_port()
        self.send_receipts = send_receipts
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="peer-smsc", daemon=True)
        self.sessions: dict[str, Any] = {}  # session_id -> smpp34.Esme
        self.submits: list[dict[str, Any]] = []
        self.receipts: list[tuple[str, int]] = []  # (message_id, deliver_sm_resp status)
        self.errors: list[str] = []
        self._parts: dict[tuple[str, str, int], dict[int, bytes]] = {}
        self._inbox: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._task: asyncio.Task | None = None
        self.server: Any = None

    # -- lifecycle
    def start(self) -> PeerSmsc:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.server = smpp34.Server(host="127.0.0.1", port=self.port, system_id="PEERSMSC")
        await self.server.start()
        self._task = asyncio.ensure_future(self._serve())

    def stop(self) -> None:
        async def _stop() -> None:
            if self._task is not None:
                self._task.cancel()
            await self.server.stop()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    # -- SMSC side
    async def _serve(self) -> None:
        while True:
            ev = await self.server.next()
            try:
                if isinstance(ev, smpp34.Esme):
                    self.sessions[ev.session_id] = ev
                elif isinstance(ev, smpp34.Unbound):
                    self.sessions.pop(ev.session_id, None)
                elif isinstance(ev, smpp34.SubmitSmEvent):
                    self._on_submit(ev)
            except Exception as e:  # noqa: BLE001 - reported by the tests
                self.errors.append(repr(e))

    def _on_submit(self, ev: Any) -> None:
        mid = f"P{next(self._ids):06d}"
        data = bytes(ev.short_message)
        tlvs = {t.tag: bytes(t.value) for t in ev.tlvs}
        if not data and smpp34.TLV_MESSAGE_PAYLOAD in tlvs:
            data = tlvs[smpp34.TLV_MESSAGE_PAYLOAD]
        seg = None
        if ev.esm_class & 0x40:
            data, seg = _split_udh(data)
        to = _handset(ev.destination_addr, ev.dest_addr_ton)
        sub = {"id": mid, "from": ev.source_addr, "to": to, "addr": (ev.destination_addr, ev.dest_addr_ton, ev.dest_addr_npi),
               "dc": ev.data_coding, "registered_delivery": ev.registered_delivery, "segment": seg}
        ev.accept(message_id=mid)
        with self._cond:
            self.submits.append(sub)
            if seg is None:
                self._store(to, ev.source_addr, _text(ev.data_coding, data), [mid])
            else:
                ref, total, seq = seg
                key = (ev.source_addr, to, ref)
                parts = self._parts.setdefault(key, {})
                parts[seq] = (data, mid)
                if len(parts) == total:
                    del self._parts[key]
                    joined = b"".join(parts[i][0] for i in range(1, total + 1))
                    self._store(to, ev.source_addr, _text(ev.data_coding, joined),
                                [parts[i][1] for i in range(1, total + 1)])
            self._cond.notify_all()
        if self.send_receipts and ev.registered_delivery & 1:
            asyncio.ensure_future(self._receipt(ev.session_id, mid, ev.source_addr, ev.destination_addr))

    def _store(self, msisdn: str, sender: str, text: str, ids: list[str]) -> None:
        self._inbox.setdefault(msisdn, []).append({"from": sender, "text": text, "message_ids": ids})

    async def _receipt(self, session_id: str, mid: str, mt_source: str, mt_dest: str) -> None:
        esme = self.sessions.get(session_id) or self._receiver()
        now = time.strftime("%y%m%d%H%M")
        text = f"id:{mid} sub:001 dlvrd:001 submit date:{now} done date:{now} stat:DELIVRD err:000 text:"
        resp = await esme.deliver_sm(
            mt_source, text.encode("ascii"), source_addr=mt_dest, source_addr_ton=1, source_addr_npi=1,
            esm_class=0x04,
            tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, mid.encode("ascii") + b"\0"),
                  smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2]))],
        )
        with self._cond:
            self.receipts.append((mid, resp.command_status))
            self._cond.notify_all()

    def _receiver(self) -> Any:
        for esme in reversed(list(self.sessions.values())):
            if esme.can_receive:
                return esme
        raise RuntimeError("no receiver-capable bind")

    # -- handset side (called from the test thread)
    def wait_bound(self, timeout: float = 10.0) -> bool:
        return wait_until(lambda: any(e.can_receive for e in list(self.sessions.values())), timeout)

    def send_mo(self, msisdn: str, text: str, data_coding: int | None = None, to: str = CODE) -> int:
        """One deliver_sm from `msisdn` (GSM-7 for ASCII text unless told, else UCS-2); returns the
        deliver_sm_resp command_status."""
        if data_coding is None:
            data_coding = 0 if text.isascii() else 8
        data = text.encode("utf-16-be") if data_coding == 8 else text.encode("ascii")

        async def send() -> int:
            resp = await self._receiver().deliver_sm(
                to, data, source_addr=msisdn, source_addr_ton=1, source_addr_npi=1, data_coding=data_coding,
            )
            return resp.command_status

        return asyncio.run_coroutine_threadsafe(send(), self.loop).result(15)

    def expect(self, msisdn: str, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self._inbox.get(msisdn, [])) >= n, timeout)
            got = self._inbox.get(msisdn, [])
            out, self._inbox[msisdn] = got[:], []
        assert len(out) >= n, f"expected {n} message(s) for {msisdn}, got {out}"
        return out

    def ask(self, msisdn: str, text: str, **kw: Any) -> str:
        assert self.send_mo(msisdn, text, **kw) == 0, "deliver_sm_resp status"
        return "\n".join(m["text"] for m in self.expect(msisdn))

    def take(self, msisdn: str) -> list[dict[str, Any]]:
        """What `msisdn` received and no `expect` took yet."""
        with self._cond:
            out, self._inbox[msisdn] = self._inbox.get(msisdn, []), []
        return out


class PeerWorld:
    def __init__(self, settings: config.Settings, peer: PeerSmsc, bot: Bot):
        self.settings, self.peer, self.bot = settings, peer, bot

    def subscribe(self, msisdn: str, *codes: str) -> None:
        for code in codes:
            assert admin.subscribe(self.settings, msisdn, code, store=self.bot.store) in ("added", "exists")

    def quiet(self, msisdn: str) -> list[dict[str, Any]]:
        """What else reached `msisdn` once no reply is left in Redis (an MO's reply is stored before
        its deliver_sm_resp, which `send_mo` awaits; a reply leaves Redis once the SMSC answered it)."""
        assert wait_until(lambda: queue_lag.read(self.bot.store).depth == 0, 10), queue_lag.read(self.bot.store)
        return self.peer.take(msisdn)


@pytest.fixture
def make_peer_world(make_settings: Callable[..., config.Settings]) -> Iterator[Callable[..., PeerWorld]]:
    """smpp34's SMSC and a bot bound to it (`overrides` for the bot's config)."""
    made: list[tuple[PeerSmsc, Bot]] = []

    def make(**overrides: Any) -> PeerWorld:
        settings = make_settings(**overrides)
        peer = PeerSmsc().start()
        bot_settings = settings.model_copy(update={"smsc": settings.smsc.model_copy(update={"host": "127.0.0.1", "port": peer.port})})
        bot = Bot(bot_settings).start()
        made.append((peer, bot))
        if not (bot.wait_bound(10) and peer.wait_bound(5)):
            bot.stop()  # before failing: a bot retrying in a loop logs tracebacks while pytest writes its own
            pytest.fail("the bot did not bind to the smpp34 SMSC")
        return PeerWorld(settings, peer, bot)

    yield make
    for peer, bot in made:
        bot.stop()
        peer.stop()
        assert not peer.errors, peer.errors


def subs_state(w: PeerWorld, msisdn: str) -> dict[str, str]:
    import json

    raw = w.bot.store.redis.hgetall(w.bot.store.keys.subs(msisdn))
    return {k.decode(): json.loads(v)["state"] for k, v in raw.items()}


def test_menu_and_numeric_cancel(make_peer_world: Callable[..., PeerWorld]):
    w = make_peer_world()
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    menu = w.peer.ask(MSISDN, "0000")
    assert menu.startswith(MENU_HEAD) and "1. 视频会员包月 15元/月" in menu and "3. 手机早晚报 3元/月" in menu, menu
    assert "您已成功退订彩铃音乐包" in w.peer.ask(MSISDN, "2")
    assert subs_state(w, MSISDN) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "active"}
    assert w.quiet(MSISDN) == []
    mts = [s for s in w.peer.submits if s["to"] == MSISDN]
    assert mts and all(s["from"] == CODE and s["dc"] == 8 for s in mts), mts
    # the MO came as national digits under TON 1 (a field quirk); replies go strictly international
    assert all(s["addr"] == ("86" + MSISDN, 1, 1) for s in mts), [s["addr"] for s in mts]


def test_repeated_menu_each_answered(make_peer_world: Callable[..., PeerWorld]):
    """`0000`, `2`, `0000`, `2` from an SMSC that sends no user_message_reference: four answers."""
    w = make_peer_world()
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    assert "2. 彩铃音乐包" in w.peer.ask(MSISDN, "0000")
    assert "您已成功退订彩铃音乐包" in w.peer.ask(MSISDN, "2")
    again = w.peer.ask(MSISDN, "0000")
    assert again.startswith(MENU_HEAD) and "2. 手机早晚报" in again, again
    assert "您已成功退订手机早晚报" in w.peer.ask(MSISDN, "2")
    assert subs_state(w, MSISDN) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "cancelled"}


def test_ucs2_mo(make_peer_world: Callable[..., PeerWorld]):
    """UCS-2 MOs: full-width `００００`, then `１，３` (full-width digits, a Chinese comma)."""
    w = make_peer_world()
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    menu = w.peer.ask(MSISDN, "００００", data_coding=8)
    assert menu.startswith(MENU_HEAD) and "3. 手机早晚报" in menu, menu
    reply = w.peer.ask(MSISDN, "１，３", data_coding=8)
    assert "您已成功退订视频会员包月" in reply and "您已成功退订手机早晚报" in reply, reply
    assert subs_state(w, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active", "NEWS": "cancelled"}
    assert "欢迎使用10086短信服务" in w.peer.ask(MSISDN, "帮助")  # a Chinese keyword in UCS-2


def test_delivery_receipt_for_a_bot_mt(make_peer_world: Callable[..., PeerWorld]):
    w = make_peer_world(**{"smsc.registered_delivery": 1})
    w.subscribe(MSISDN, "VIDEO")
    assert w.peer.send_mo(MSISDN, "0000") == 0
    msg = w.peer.expect(MSISDN)[0]
    assert msg["text"].startswith(MENU_HEAD)
    ids = msg["message_ids"]
    assert wait_until(lambda: len(w.peer.receipts) >= len(ids), 10), w.peer.receipts
    assert all(status == 0 for _mid, status in w.peer.receipts), w.peer.receipts
    for mid in ids:
        assert wait_until(lambda mid=mid: [r.get("state") for r in mt_records(w, mid)] == ["DELIVRD"], 10), \
            mt_records(w, mid)
        rec = mt_records(w, mid)[0]
        assert rec.get("to") == MSISDN and rec.get("tpl") == "subscriptions.menu", rec


def mt_records(w: PeerWorld, message_id: str) -> list[dict[str, str]]:
    """The bot's MT records under SMSC message id `message_id` (`Store.mt_records`; older stores
    had one record per id, `Store.mt_record`)."""
    store = w.bot.store
    if hasattr(store, "mt_records"):
        return list(store.mt_records(message_id))
    rec = store.mt_record(message_id)
    return [rec] if rec else []
