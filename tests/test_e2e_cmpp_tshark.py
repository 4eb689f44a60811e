"""The bot's own CMPP session, checked by Wireshark's CMPP dissector, for 3.0 and 2.0.

The bot (`smsc.protocol: cmpp3 | cmpp2`, receipts on) talks to the simulated ISMG through a
recording TCP proxy on 127.0.0.1: CONNECT, an MO (0000) and its menu, a numeric cancel and its
answer, the status report of each reply, the gateway's ACTIVE_TEST and ours (behind the resps, as
the confirmation that the gateway read them), TERMINATE on stop. Every PDU of both directions is
wrapped in TCP by ``text2pcap`` and decoded by ``tshark`` (tests/cmpp_tshark.py); every field tshark
shows for a PDU the bot wrote must be what the bot meant: CONNECT from our SP_Id with
AuthenticatorSource recomputed here from the timestamp tshark shows; a DELIVER_RESP with Result 0
and the Msg_Id of each DELIVER the gateway sent (MOs and reports alike); each SUBMIT to the
subscriber's number from the short code, our SP_Id as Msg_src, the free Service_Id and fee, a
status report asked for, and the text the handset received; ACTIVE_TEST(_RESP) and TERMINATE.
On 2.0 only the fields tshark can place are compared (tests/test_cmpp_tshark.py's docstring).
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime
from typing import Any

import pytest

from smsbot import admin, cmpp
from smsbot.app import Bot
from smsbot.cmpp import auth
from smsbot.simulator.ismg import SimIsmg
from tests.helpers import wait_until

from .cmpp_sp import CMPP_SERVICES, SECRET, SP_ID
from .cmpp_tshark import SKIP_REASON, TEXT2PCAP, TSHARK, meant, shared_with_20, tshark_frames

pytestmark = pytest.mark.skipif(not (TSHARK and TEXT2PCAP), reason=SKIP_REASON)
NOW = datetime(2025, 3, 14, 9, 31, 7)
GATEWAY = 0x01234
MSISDN, INTERNATIONAL, CODE = "13800138000", "8613800138000", "10086"


class Recorder:
    """A TCP proxy for one connection: what each side wrote, in the order it arrived."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.chunks: list[tuple[bool, bytes]] = []  # (from the bot?, octets)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            bot, _ = self.listener.accept()
        except OSError:
            return
        gw = socket.create_connection(("127.0.0.1", self.upstream))
        for src, dst, from_bot in ((bot, gw, True), (gw, bot, False)):
            t = threading.Thread(target=self._pump, args=(src, dst, from_bot), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, from_bot: bool) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.chunks.append((from_bot, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for t in self._threads:
            t.join(5)

    def pdus(self) -> list[tuple[bool, bytes]]:
        """Whole PDUs, each direction framed on its own, in the order they completed."""
        framers = {True: cmpp.Framer(), False: cmpp.Framer()}
        out = []
        with self._lock:
            for from_bot, data in self.chunks:
                out += [(from_bot, cmpp.encode_header(*f)) for f in framers[from_bot].feed(data)]
        return out


def run_session(make_settings: Any, protocol: str, version: int) -> tuple[Recorder, list[str], int]:
    with SimIsmg(SP_ID, SECRET, version=version, clock=lambda: NOW, gateway_code=GATEWAY, response_timeout=5.0) as gw:
        rec = Recorder(gw.port)
        bot = Bot(make_settings(**{"smsc.protocol": protocol, "smsc.port": rec.port, "smsc.registered_delivery": 1,
                                   "smsc.cmpp": {"sp_id": SP_ID, "secret": SECRET, "services": CMPP_SERVICES}}))
        texts: list[str] = []
        try:
            bot.start()
            assert bot.wait_bound(10)
            assert admin.subscribe(bot.settings, MSISDN, "MUSIC", store=bot.store) == "added"
            for mo in ("0000", "1"):
                assert gw.wait_mo(gw.inject_mo(MSISDN, CODE, mo)["id"])["state"] == "delivered"
                assert wait_until(lambda: bool(texts.extend(m.text for m in gw.mailbox.take(MSISDN))) or
                                  len(texts) == (1 if mo == "0000" else 2), 10)
            assert wait_until(lambda: gw.stats().get("reports_delivered") == 2, 10)
            assert gw.active_test()
            assert wait_until(lambda: any(cmpp.CommandId.ACTIVE_TEST_RESP.to_bytes(4, "big") == d[4:8]
                                          for from_bot, d in rec.pdus() if from_bot), 10)
        finally:
            bot.stop()
            rec.close()
        return rec, texts, gw.port


def connect_time(ts: int) -> datetime:
    digits = f"{ts:010d}"
    return datetime(2000, int(digits[:2]), int(digits[2:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:]))


def what_the_bot_meant(records: list[tuple[bool, bytes]], texts: list[str], version: int) -> list[tuple[cmpp.Pdu, datetime | None]]:
    """For each PDU the bot wrote, the PDU it was to write (built from the scenario, not from its octets;
    taken as written are only its own choices: the CONNECT's Timestamp, and which stored DELIVER a
    DELIVER_RESP answers next — each exactly once)."""
    delivers = []  # the DELIVERs the gateway sent so far (their Msg_Ids are what the resps must carry)
    replies = iter(texts)
    out: list[tuple[cmpp.Pdu, datetime | None]] = []
    for from_bot, data in records:
        (frame,) = cmpp.Framer().feed(data)
        if not from_bot:
            pdu = cmpp.decode(frame.command_id, frame.body, version)
            if isinstance(pdu, cmpp.Deliver):
                delivers.append(pdu.msg_id)
            continue
        command = frame.command_id
        if command == cmpp.CommandId.CONNECT:
            ts = cmpp.decode(command, frame.body, version).timestamp
            out.append((cmpp.Connect(SP_ID, auth.authenticator_source(SP_ID, SECRET, ts), version, ts), connect_time(ts)))
        elif command == cmpp.CommandId.DELIVER_RESP:  # MOs and reports are answered as each is stored: any order
            answered = cmpp.decode(command, frame.body, version).msg_id
            assert answered in delivers, f"a DELIVER_RESP for Msg_Id {answered:x}, which no unanswered DELIVER had"
            delivers.remove(answered)
            out.append((cmpp.DeliverResp(answered, 0), None))
        elif command == cmpp.CommandId.SUBMIT:
            reply = next(replies)
            out.append((cmpp.Submit([INTERNATIONAL], reply.encode("utf-16-be"), 8, src_id=CODE, msg_src=SP_ID,
                                    service_id="HELP", fee=cmpp.FREE, registered_delivery=1), None))
        else:
            out.append(({cmpp.CommandId.ACTIVE_TEST: cmpp.ActiveTest(), cmpp.CommandId.ACTIVE_TEST_RESP: cmpp.ActiveTestResp(),
                         cmpp.CommandId.TERMINATE: cmpp.Terminate()}[command], None))
    assert delivers == [] and next(replies, None) is None  # every DELIVER answered, every reply sent once
    return out


@pytest.mark.parametrize(("protocol", "version"), [("cmpp3", 0x30), ("cmpp2", 0x20)])
def test_tshark_reads_the_bots_session_as_meant(make_settings, tmp_path, protocol, version):
    rec, texts, port = run_session(make_settings, protocol, version)
    assert "彩铃音乐包" in texts[0] and "您已成功退订彩铃音乐包" in texts[1]
    records = rec.pdus()
    frames = tshark_frames(records, rec.port, port, tmp_path, malformed_ok=version == 0x20)
    from_bot = [fields for (who, _d), (_src, fields) in zip(records, frames) if who]
    written = [d for who, d in records if who]
    meant_pdus = what_the_bot_meant(records, texts, version)
    kinds = [type(p).__name__ for p, _t in meant_pdus]
    assert kinds[0] == "Connect" and kinds[-1] == "Terminate"
    assert kinds.count("DeliverResp") == 4 and kinds.count("Submit") == 2 and kinds.count("ActiveTestResp") == 1
    assert kinds.count("ActiveTest") >= 2  # behind the guarded resps of both MOs
    want = []
    for (pdu, when), data in zip(meant_pdus, written, strict=True):
        (frame,) = cmpp.Framer().feed(data)
        fields = meant(pdu, frame.sequence, len(data), now=NOW, gateway=GATEWAY, connect_time=when)
        want.append(fields if version == 0x30 else shared_with_20(pdu.COMMAND, fields))
    if version == 0x20:
        from_bot = [got[:len(w)] for got, w in zip(from_bot, want)]
    assert from_bot == want
