"""The simulated SMSC over real TCP on 127.0.0.1, with smpplib's Client as the ESME."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm

from smsbot.config import SimulatorSettings, SmscSettings
from smsbot.simulator import Handset, SimSmsc, format_message, run_handset
from smsbot.simulator.handset import interactive

from .helpers import wait_until

MSISDN = "13800138000"
CODE = "10086"


@pytest.fixture
def sim():
    s = SimSmsc(
        SimulatorSettings(host="127.0.0.1", smpp_port=0, control_port=0, redeliver_seconds=0.2),
        SmscSettings(system_id="smsbot", password="secret"),
        response_timeout=1.0,
    ).start()
    yield s
    s.stop()


class Esme(smpplib.client.Client):
    """smpplib client with a locked send and a background reader answering deliver_sm."""

    def __init__(self, sim: SimSmsc, mode: str = "transceiver", status=lambda pdu: 0, password: str = "secret"):
        super().__init__("127.0.0.1", sim.smpp_port, timeout=0.2, allow_unknown_opt_params=True)
        self._send_lock = threading.Lock()
        self.received: list = []
        self.sent: list = []
        self.status_fn = status
        self.stopped = threading.Event()
        self.set_message_received_handler(self._on_deliver)
        self.set_message_sent_handler(lambda pdu: self.sent.append(pdu))
        self.connect()
        self.timeout = 2
        self._socket.settimeout(2)
        getattr(self, f"bind_{mode}")(system_id="smsbot", password=password)
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _on_deliver(self, pdu):
        self.received.append(pdu)
        return self.status_fn(pdu)

    def send_pdu(self, p):
        with self._send_lock:
            return super().send_pdu(p)

    def _loop(self):
        while not self.stopped.is_set():
            try:
                self.read_once(auto_send_enquire_link=False)
            except socket.timeout:
                continue
            except (smpplib.exceptions.ConnectionError, OSError, AttributeError):
                break
        self.stopped.set()

    def close(self):
        self.stopped.set()
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def wait_received(self, n: int, timeout: float = 3.0) -> list:
        wait_until(lambda: len(self.received) >= n, timeout, interval=0.01)
        return list(self.received)


def _s(v) -> str:
    return (v.decode() if isinstance(v, bytes) else v).rstrip("\0")


def _raw_connect(sim: SimSmsc) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", sim.smpp_port), timeout=2)
    return s


def _read_pdu(s: socket.socket) -> tuple[int, int, int, bytes]:
    hdr = b""
    while len(hdr) < 16:
        chunk = s.recv(16 - len(hdr))
        if not chunk:
            raise ConnectionError("closed")
        hdr += chunk
    length, cid, status, seq = struct.unpack(">IIII", hdr)
    body = b""
    while len(body) < length - 16:
        body += s.recv(length - 16 - len(body))
    return cid, status, seq, body


def _bind_body(system_id: str, password: str) -> bytes:
    return system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"


def _pdu(cid: int, seq: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


# ------------------------------------------------------------------ binds


def test_bind_success_and_failures(sim):
    e = Esme(sim)
    try:
        assert sim.binds() and sim.binds()[0]["mode"] == "transceiver"
        e2 = Esme(sim, mode="receiver")  # several binds at once
        assert len(sim.binds()) == 2
        e2.close()
    finally:
        e.close()
    c = smpplib.client.Client("127.0.0.1", sim.smpp_port, timeout=2, allow_unknown_opt_params=True)
    c.connect()
    with pytest.raises(smpplib.exceptions.PDUError) as ei:
        c.bind_transceiver(system_id="wrong", password="secret")
    assert ei.value.args[1] == smpplib.consts.SMPP_ESME_RINVSYSID
    with pytest.raises(smpplib.exceptions.PDUError) as ei:
        c.bind_transceiver(system_id="smsbot", password="nope")
    assert ei.value.args[1] == smpplib.consts.SMPP_ESME_RINVPASWD
    c.disconnect()
    assert sim.stats()["bind_failures"] == 2


def test_enquire_link_unbind_and_generic_nack(sim):
    s = _raw_connect(sim)
    try:
        s.sendall(_pdu(0x09, 1, _bind_body("smsbot", "secret")))
        assert _read_pdu(s)[:3] == (0x80000009, 0, 1)
        s.sendall(_pdu(0x15, 2))
        assert _read_pdu(s)[:3] == (0x80000015, 0, 2)
        s.sendall(_pdu(0x00000077, 3))  # unknown command
        assert _read_pdu(s)[:3] == (0x80000000, smpplib.consts.SMPP_ESME_RINVCMDID, 3)
        s.sendall(_pdu(0x06, 4))
        assert _read_pdu(s)[:3] == (0x80000006, 0, 4)
        assert s.recv(16) == b""  # closed after unbind
    finally:
        s.close()


def test_bad_command_length_gets_generic_nack_and_close(sim):
    s = _raw_connect(sim)
    try:
        s.sendall(_pdu(0x15, 7) + struct.pack(">IIII", 8, 0x15, 0, 8))
        assert _read_pdu(s)[:3] == (0x80000015, 0, 7)  # the good PDU before the bad header is served
        assert _read_pdu(s)[:2] == (0x80000000, smpplib.consts.SMPP_ESME_RINVCMDLEN)
        assert s.recv(16) == b""
    finally:
        s.close()


def test_simulator_sends_enquire_link_when_idle():
    with SimSmsc(SimulatorSettings(smpp_port=0, control_port=0), enquire_link_interval=0.3) as sim:
        s = _raw_connect(sim)
        try:
            s.sendall(_pdu(0x09, 1, _bind_body("smsbot", "secret")))
            _read_pdu(s)
            cid, _st, seq, _ = _read_pdu(s)
            assert cid == 0x15
            s.sendall(_pdu(0x80000015, seq))
        finally:
            s.close()


# ------------------------------------------------------------------ MT: submit_sm → mailbox


def test_submit_short_and_long_ucs2_reach_handset_once(sim):
    e = Esme(sim)
    h = Handset(sim.control_url, MSISDN)
    try:
        e.send_message(source_addr=CODE, destination_addr=MSISDN, short_message="你好".encode("utf-16-be"),
                       data_coding=8, registered_delivery=0)
        long_text = "这是一条很长的中文消息，" * 12  # 144 chars → 3 UCS-2 parts
        parts, _enc, esm = smpplib.gsm.make_parts(long_text, encoding=smpplib.consts.SMPP_ENCODING_ISO10646)
        assert len(parts) == 3
        for p in reversed(parts):  # out of order on purpose
            e.send_message(source_addr=CODE, destination_addr=MSISDN, short_message=p, data_coding=8, esm_class=esm)
        assert wait_until(lambda: len(e.sent) >= 4, 3)
        ids = [p.message_id for p in e.sent]
        assert len(set(ids)) == 4 and all(ids)
        msgs = h.collect(wait=2)
        if len(msgs) < 2:
            msgs += h.collect(wait=2)
        assert [(m["text"], m["parts"], m["from"]) for m in msgs] == [("你好", 1, CODE), (long_text, 3, CODE)]
        assert h.collect(wait=0) == []  # shown once
        assert sim.stats()["mt_received"] == 2 and sim.stats()["mt_parts_received"] == 4
        block = format_message(msgs[1])
        assert block.startswith(f"--- from {CODE} (3 parts) ") and block.endswith(long_text)
    finally:
        e.close()


def test_delivery_receipt_sent_when_requested(sim):
    e = Esme(sim)
    try:
        e.send_message(source_addr=CODE, destination_addr=MSISDN, short_message=b"hi", data_coding=0,
                       registered_delivery=1)
        got = e.wait_received(1)
        assert got, "no receipt"
        r = got[0]
        assert r.esm_class & 0x04
        assert _s(r.receipted_message_id) == _s(e.sent[0].message_id)
        assert r.message_state == 2
        assert b"stat:DELIVRD" in r.short_message
    finally:
        e.close()


def test_inbox_long_poll_and_submit_to_transmitter_only(sim):
    rx = Esme(sim, mode="receiver")
    tx = Esme(sim, mode="transmitter")
    h = Handset(sim.control_url, "13900000001")
    try:
        threading.Timer(0.3, lambda: tx.send_message(source_addr=CODE, destination_addr=h.msisdn,
                                                     short_message=b"late", data_coding=0)).start()
        t0 = time.monotonic()
        msgs = h.collect(wait=3)
        assert [m["text"] for m in msgs] == ["late"]
        assert 0.2 < time.monotonic() - t0 < 2.5
    finally:
        rx.close()
        tx.close()


# ------------------------------------------------------------------ MO injection


def _udh(sm: bytes) -> tuple[int, int, int, int, bytes]:
    """(iei, ref, total, seq, payload) of a concatenated part."""
    udhl = sm[0]
    iei = sm[1]
    if iei == 0x00:
        ref, total, seq = sm[3], sm[4], sm[5]
    else:
        ref, total, seq = struct.unpack(">H", sm[3:5])[0], sm[5], sm[6]
    return iei, ref, total, seq, sm[1 + udhl:]


def test_inject_short_mo_with_umr_and_vendor_tlv(sim):
    e = Esme(sim)
    try:
        r1 = sim.inject_mo(MSISDN, CODE, "0000", extra_tlvs={0x1401: b"\x01\x02"})
        r2 = sim.inject_mo(MSISDN, CODE, "1")
        got = e.wait_received(2)
        assert [(p.source_addr, p.destination_addr, p.short_message) for p in got] == [
            (MSISDN.encode(), CODE.encode(), b"0000"), (MSISDN.encode(), CODE.encode(), b"1")]
        assert got[1].user_message_reference == (got[0].user_message_reference + 1) & 0xFFFF
        assert r2["user_message_reference"] == got[1].user_message_reference
        assert sim.wait_mo(r1["id"])["state"] == "delivered"
        assert sim.wait_mo(r2["id"])["state"] == "delivered"
    finally:
        e.close()


@pytest.mark.parametrize("split", ["udh8", "udh16", "sar"])
def test_inject_long_mo_split_and_shuffled(sim, split):
    e = Esme(sim)
    text = "取消" + "包月业务" * 40  # 162 UCS-2 chars → 3 parts
    try:
        r = sim.inject_mo(MSISDN, CODE, text, split=split, shuffle=True)
        assert r["parts"] == 3
        got = e.wait_received(3)
        assert len(got) == 3
        umrs = {p.user_message_reference for p in got}
        assert len(umrs) == 1
        pieces = {}
        for p in got:
            assert p.data_coding == 8
            if split == "sar":
                assert p.esm_class == 0
                pieces[p.sar_segment_seqnum] = p.short_message
                assert p.sar_total_segments == 3
                refs = {q.sar_msg_ref_num for q in got}
                assert len(refs) == 1
            else:
                assert p.esm_class & 0x40
                iei, _ref, total, seq, payload = _udh(p.short_message)
                assert iei == (0x00 if split == "udh8" else 0x08) and total == 3
                assert len(p.short_message) <= 140
                pieces[seq] = payload
        order = [p.sar_segment_seqnum if split == "sar" else _udh(p.short_message)[3] for p in got]
        assert order != [1, 2, 3]  # shuffled
        assert b"".join(pieces[i] for i in (1, 2, 3)).decode("utf-16-be") == text
        assert sim.wait_mo(r["id"])["state"] == "delivered"
    finally:
        e.close()


def test_temporary_error_redelivers_and_permanent_rejects(sim):
    answers = [0x64, 0x58, 0]  # ESME_RX_T_APPN, then throttled, then OK
    e = Esme(sim, status=lambda pdu: answers.pop(0) if answers else 0x65)
    try:
        r = sim.inject_mo(MSISDN, CODE, "0000")
        st = sim.wait_mo(r["id"], timeout=4)
        assert st["state"] == "delivered" and st["redeliveries"] == 2 and st["attempts"] == 3
        got = e.wait_received(3)
        assert len({p.user_message_reference for p in got}) == 1  # same TP-MR on redelivery
        r2 = sim.inject_mo(MSISDN, CODE, "bad")
        st2 = sim.wait_mo(r2["id"], timeout=3)
        assert st2["state"] == "rejected" and st2["last_status"] == 0x65
        s = sim.stats()
        assert s["mo_delivered"] == 1 and s["mo_redelivered"] == 2 and s["mo_rejected"] == 1
    finally:
        e.close()


def test_no_bind_then_bind_delivers_and_duplicate(sim):
    r = sim.inject_mo(MSISDN, CODE, "hello", duplicate=True)
    # the SMSC tried, found no bind, and keeps the MO (neither rejected nor lost)
    assert wait_until(lambda: any(h.get("result") == "no bind" for h in sim.mo_status(r["id"])["history"]), 5)
    assert sim.mo_status(r["id"])["state"] in ("queued", "delivering")
    e = Esme(sim)
    try:
        got = e.wait_received(2)
        assert [p.short_message for p in got] == [b"hello", b"hello"]
        assert got[0].user_message_reference == got[1].user_message_reference
        assert sim.wait_mo(r["id"])["state"] == "delivered"
        assert sim.stats()["mo_duplicates_sent"] == 1
    finally:
        e.close()


def test_response_timeout_counts_as_temporary():
    with SimSmsc(SimulatorSettings(smpp_port=0, control_port=0, redeliver_seconds=0.1), response_timeout=0.3) as sim:
        s = _raw_connect(sim)
        try:
            s.sendall(_pdu(0x09, 1, _bind_body("smsbot", "secret")))
            _read_pdu(s)
            r = sim.inject_mo(MSISDN, CODE, "x")
            cid, _, seq1, body1 = _read_pdu(s)  # ignore the first one
            assert cid == 0x05
            cid, _, seq2, body2 = _read_pdu(s)
            assert cid == 0x05 and seq2 != seq1 and body2 == body1
            s.sendall(_pdu(0x80000005, seq2, b"\0"))
            assert sim.wait_mo(r["id"])["state"] == "delivered"
        finally:
            s.close()


def test_inject_raw_and_drop_connections(sim):
    e = Esme(sim)
    try:
        res = sim.inject_raw(b"", command_id=0x15, wait=1.0)  # enquire_link: smpplib answers it
        assert res["resp_command_id"] == 0x80000015 and res["resp_status"] == 0
        assert sim.drop_connections() == 1
        e._thread.join(2)
        assert e.stopped.is_set()
        assert sim.binds() == []
        e2 = Esme(sim)  # reconnect works
        assert len(sim.binds()) == 1
        e2.close()
    finally:
        e.close()


# ------------------------------------------------------------------ control API + handset


def _http(sim, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(sim.control_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_control_api_routes(sim):
    e = Esme(sim)
    try:
        assert _http(sim, "GET", "/healthz") == (200, {"ok": True, "protocol": "smpp", "smpp_port": sim.smpp_port, "binds": 1})
        code, body = _http(sim, "POST", "/mo", {"from": MSISDN, "to": CODE, "text": "hi", "tlvs": {"0x1401": "ab"}})
        assert code == 202 and body["id"]
        e.wait_received(1)
        assert wait_until(lambda: _http(sim, "GET", f"/mo/{body['id']}")[1]["state"] == "delivered", 2)
        assert _http(sim, "GET", f"/mo/{body['id']}")[1]["state"] == "delivered"
        assert _http(sim, "GET", "/mo/nope")[0] == 404
        for bad, needle in [({"to": CODE, "text": "x"}, "from"), ({"from": MSISDN, "to": CODE, "text": 5}, "text"),
                            ({"from": MSISDN, "to": CODE, "text": "x", "split": "udh9"}, "split"),
                            ({"from": MSISDN, "to": CODE, "text": "x", "tlvs": {"0x1401": "zz"}}, "hex")]:
            code, err = _http(sim, "POST", "/mo", bad)
            assert code == 400 and needle in err["error"]
        assert _http(sim, "GET", "/inbox/1?wait=abc")[0] == 400
        assert _http(sim, "GET", "/stats")[1]["mo_delivered"] == 1
        assert _http(sim, "POST", "/drop") == (200, {"dropped": 1})
    finally:
        e.close()


def test_handset_converse_and_run_handset(sim):
    """A tiny echo bot on smpplib answers every MO with two MTs."""
    bot: Esme | None = None

    def on_mo(pdu):
        text = pdu.short_message.decode()
        for reply in (f"echo {text}", "bye"):
            threading.Thread(target=bot.send_message, kwargs=dict(
                source_addr=CODE, destination_addr=pdu.source_addr.decode(), short_message=reply.encode(),
                data_coding=0)).start()
        return 0

    bot = Esme(sim, status=on_mo)
    try:
        h = Handset(sim.control_url, MSISDN)
        msgs = h.converse(CODE, "ping", wait=0.6)
        assert sorted(m["text"] for m in msgs) == ["bye", "echo ping"]
        out = io.StringIO()
        assert run_handset(sim.control_url, MSISDN, CODE, "pong", 0.6, out=out) == 0
        assert "echo pong" in out.getvalue() and "--- from 10086 " in out.getvalue()
        out = io.StringIO()
        assert interactive(h, CODE, 0.6, inp=io.StringIO("one\nquit\n"), out=out, poll=0.2) == 0
        assert "echo one" in out.getvalue()
        assert run_handset("http://127.0.0.1:1", MSISDN, CODE, "x", 0.1, out=io.StringIO()) == 2
    finally:
        bot.close()


def test_stop_joins_all_threads():
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        s = SimSmsc(SimulatorSettings(smpp_port=0, control_port=0)).start()
        e = Esme(s)
        s.inject_mo(MSISDN, CODE, "x")
        e.wait_received(1)
        s.stop()
        e.close()
    left = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("simsmsc")]
    assert left == []


# ------------------------------------------------------------------ fault injection (submit_sm side)


def _bound(sim: SimSmsc) -> socket.socket:
    s = _raw_connect(sim)
    s.settimeout(5)
    s.sendall(_pdu(0x09, 1, _bind_body("smsbot", "secret")))
    assert _read_pdu(s)[:2] == (0x80000009, 0)
    return s


def _submit(seq: int, to: str = MSISDN, text: str = "hi") -> bytes:
    from smsbot import pdu
    from smsbot.messages import SubmitSm

    # as the bot addresses MTs: international, the country code and the number (TON 1, NPI 1)
    return pdu.encode_submit_sm(SubmitSm(source_addr=CODE, destination_addr="86" + to, short_message=text.encode(), data_coding=0), seq)


def _resps(s: socket.socket, n: int) -> list[tuple[int, int]]:
    """(sequence, status) of the next n submit_sm_resp."""
    out = []
    while len(out) < n:
        cid, status, seq, _ = _read_pdu(s)
        assert cid == 0x80000004
        out.append((seq, status))
    return out


def _texts(sim: SimSmsc, msisdn: str = MSISDN) -> list[str]:
    return [m.text for m in sim.mailbox.peek(msisdn)]


def test_faults_plan_api_and_validation(sim):
    assert sim.faults.describe()["throttle_every"] == 0
    with pytest.raises(Exception, match="unknown fault"):
        sim.set_faults(throttle_evry=2)
    for bad in ({"throttle_every": -1}, {"resp_delay_ms": "x"}, {"reject": {MSISDN: "zz"}}, {"reject": [1]},
                {"max_tps": True}, {"drop_after_submit": 1.5}):
        code, err = _http(sim, "POST", "/faults", bad)
        assert code == 400 and err["error"], bad
    code, plan = _http(sim, "POST", "/faults", {"throttle_first": 2, "reject": {MSISDN: "0x0B"}, "resp_delay_ms": 5})
    assert code == 200 and plan["throttle_first"] == 2 and plan["reject"] == {MSISDN: 0x0B} and plan["submits_seen"] == 0
    assert _http(sim, "GET", "/faults")[1]["resp_delay_ms"] == 5
    assert _http(sim, "POST", "/faults", {})[1]["throttle_first"] == 0  # a new plan replaces the old one whole
    assert _http(sim, "GET", "/faults")[1]["reject"] == {}
    assert _http(sim, "DELETE", "/faults")[0] == 405
    assert _http(sim, "GET", "/submits")[1] == {"submits": [], "peak_per_second": 0}


def test_throttle_patterns_and_reject_are_answered_and_not_stored(sim):
    sim.set_faults(throttle_first=2, throttle_every=3, reject={"13900000001": 0x0B})
    s = _bound(sim)
    try:
        s.sendall(b"".join(_submit(10 + i, text=f"m{i + 1}") for i in range(6)) + _submit(20, to="13900000001"))
        got = dict(_resps(s, 7))
        # 1, 2 throttled (first 2), 3 and 6 throttled (every 3rd), 7 rejected by destination
        assert [got[10 + i] for i in range(6)] == [0x58, 0x58, 0x58, 0, 0, 0x58] and got[20] == 0x0B
        assert _texts(sim) == ["m4", "m5"]
        assert _texts(sim, "13900000001") == []
        st = sim.stats()
        assert (st["submits_received"], st["submits_throttled"], st["submits_rejected"], st["mt_received"]) == (7, 4, 1, 2)
        log_ = sim.submit_log()
        assert [e["n"] for e in log_] == list(range(1, 8)) and [e["status"] for e in log_][-1] == 0x0B
        sim.set_faults(throttle_first=1, throttle_status="0x14")
        s.sendall(_submit(30))
        assert _resps(s, 1) == [(30, 0x14)]
    finally:
        s.close()


def test_max_tps_throttles_per_bind_over_a_sliding_second(sim):
    sim.set_faults(max_tps=3)
    s, s2 = _bound(sim), _bound(sim)
    try:
        s.sendall(b"".join(_submit(i) for i in range(1, 6)))
        assert [st for _seq, st in _resps(s, 5)] == [0, 0, 0, 0x58, 0x58]
        s2.sendall(_submit(1))  # another bind has its own budget
        assert _resps(s2, 1) == [(1, 0)]
        time.sleep(1.1)  # the SMSC's own sliding second, over the socket, is what is tested: one wait past it
        s.sendall(_submit(9))
        assert _resps(s, 1) == [(9, 0)]
        assert sim.stats()["submits_throttled"] == 2 and len(_texts(sim)) == 5
    finally:
        s.close()
        s2.close()


def test_resp_delay_keeps_order_and_shows_outstanding(sim):
    sim.set_faults(resp_delay_ms=300)
    s = _bound(sim)
    try:
        t0 = time.monotonic()
        s.sendall(b"".join(_submit(i, text=f"d{i}") for i in range(1, 5)))
        assert _resps(s, 4) == [(1, 0), (2, 0), (3, 0), (4, 0)]
        assert time.monotonic() - t0 >= 0.25
        assert sim.stats()["max_outstanding_submits"] == 4
        assert _texts(sim) == ["d1", "d2", "d3", "d4"]
        s.sendall(_pdu(0x15, 50))  # not delayed
        assert _read_pdu(s)[:3] == (0x80000015, 0, 50)
        assert sim.stats()["enquire_links_received"] == 1
    finally:
        s.close()


def _eof(s: socket.socket) -> bool:
    """True when the peer closed with a FIN (no reset, no further PDU)."""
    try:
        return s.recv(16) == b""
    except ConnectionResetError:
        return False


def test_drop_after_submit_leaves_it_and_later_ones_unanswered_and_unstored(sim):
    sim.set_faults(drop_after_submit=2)
    s = _bound(sim)
    try:
        s.sendall(b"".join(_submit(i, text=f"s{i}") for i in range(1, 5)))
        assert _resps(s, 1) == [(1, 0)]  # written before the drop: it arrives
        assert _eof(s)
    finally:
        s.close()
    assert wait_until(lambda: sim.binds() == [], 5)
    st = sim.stats()
    assert _texts(sim) == ["s1"]
    assert (st["submits_received"], st["submits_dropped"], st["connections_dropped"]) == (4, 3, 1)
    assert [e["status"] for e in sim.submit_log()] == [0, None]  # 3 and 4 were read and discarded unjudged
    s = _bound(sim)  # the next connection is served normally
    try:
        s.sendall(_submit(7, text="again"))
        assert _resps(s, 1) == [(7, 0)]
        assert _texts(sim) == ["s1", "again"]
    finally:
        s.close()


def test_drop_after_resp_answers_and_stores_then_drops(sim):
    sim.set_faults(drop_after_resp=2, resp_delay_ms=50)
    s = _bound(sim)
    try:
        s.sendall(b"".join(_submit(i, text=f"r{i}") for i in range(1, 5)))
        assert _resps(s, 2) == [(1, 0), (2, 0)]
        assert _eof(s)
    finally:
        s.close()
    assert wait_until(lambda: sim.stats()["binds"] == 0, 5)
    # 3 and 4 were judged (read before the drop) but their delayed resps never went out; each is
    # counted when its delay ends, which may be after the connection is gone (a read apart from 1
    # and 2 makes them due a little later): wait for the count, never read it at once
    assert wait_until(lambda: sim.stats()["submits_dropped"] == 2, 5), sim.stats()
    assert _texts(sim) == ["r1", "r2"]
    assert sim.stats()["max_outstanding_submits"] >= 2


def test_unbind_is_counted(sim):
    s = _bound(sim)
    try:
        s.sendall(_pdu(0x06, 2))
        assert _read_pdu(s)[:3] == (0x80000006, 0, 2)
    finally:
        s.close()
    assert sim.stats()["unbinds_received"] == 1


def test_peak_rate():
    from smsbot.simulator.faults import peak_rate

    assert peak_rate([]) == 0
    assert peak_rate([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]) == 5
    assert peak_rate([5.0, 0.0, 0.1, 0.99]) == 3




# ------------------------------------------------------------------ profiles: the field SMSC


def _parse_mo(cid: int, body: bytes) -> dict:
    """deliver_sm / data_sm body → fields, read by hand (C-octet strings of any length)."""
    out: dict = {}
    p = 0

    def cstr() -> bytes:
        nonlocal p
        e = body.index(b"\0", p)
        v, p = body[p:e], e + 1
        return v

    out["service_type"] = cstr()
    p += 2
    out["source_addr"] = cstr().decode()
    p += 2
    out["destination_addr"] = cstr().decode()
    if cid == 0x103:
        out["esm_class"], out["registered_delivery"], out["data_coding"] = body[p], body[p + 1], body[p + 2]
        p += 3
        out["short_message"] = None
    else:
        out["esm_class"] = body[p]
        p += 3
        cstr(), cstr()
        out["registered_delivery"], _, out["data_coding"], _, n = body[p : p + 5]
        p += 5
        out["short_message"], p = body[p : p + n], p + n
    tlvs = {}
    while p < len(body):
        tag, n = struct.unpack(">HH", body[p : p + 4])
        tlvs[tag], p = body[p + 4 : p + 4 + n], p + 4 + n
    out["tlvs"] = tlvs
    return out


def _next_request(s: socket.socket, answer: bool = True, status: int = 0) -> tuple[int, int, dict]:
    """The next deliver_sm / data_sm (enquire_links answered and skipped), answered with its resp."""
    while True:
        cid, _st, seq, body = _read_pdu(s)
        if cid == 0x15:
            s.sendall(_pdu(0x80000015, seq))
            continue
        assert cid in (0x05, 0x103), hex(cid)
        if answer:
            s.sendall(_pdu(cid | 0x80000000, seq, b"\0", status))
        return cid, seq, _parse_mo(cid, body)


@pytest.fixture
def field_sim():
    s = SimSmsc(
        SimulatorSettings(host="127.0.0.1", smpp_port=0, control_port=0, redeliver_seconds=0.2),
        SmscSettings(system_id="smsbot", password="secret"),
        response_timeout=1.0,
        profile="field",
    ).start()
    yield s
    s.stop()


def test_field_profile_mos_on_the_wire(field_sim):
    sim = field_sim
    assert sim.profile == "field" and sim.describe_profile()["overrides"] == {}
    s = _bound(sim)
    try:
        ids = [sim.inject_mo(MSISDN, CODE, t)["id"] for t in ("0000", "2", "0000", "中文")]
        got = [_next_request(s) for _ in ids]
        cids = [g[0] for g in got]
        assert cids == [0x05, 0x05, 0x103, 0x05], "every 3rd single-part MO is a data_sm"
        seqs = [g[1] for g in got]
        assert seqs[0] >= 0xFFFFFFF0 and seqs == [seqs[0] + i for i in range(4)], [hex(x) for x in seqs]
        for cid, _seq, m in got:
            assert m["service_type"] == b"CMT_FLD8"  # 8 octets, longer than the spec's 6
            assert 0x0204 not in m["tlvs"], "no user_message_reference"
            assert m["short_message"] in (None, b"")
        assert [g[2]["tlvs"][0x0424] for g in got] == [b"0000\0", b"2\0", b"0000\0", "中文".encode("utf-16-be") + b"\0\0"]
        for mo in ids:
            st = sim.wait_mo(mo)
            assert st["state"] == "delivered" and st["user_message_reference"] is None, st
        st = sim.mo_status(ids[2])
        assert st["carrier"] == "data_sm" and bytes.fromhex(st["wire"][0])[4:8] == b"\x00\x00\x01\x03"
        assert sim.stats()["mo_data_sm_sent"] == 1
    finally:
        s.close()


def test_data_sm_needs_data_sm_resp(field_sim):
    sim = field_sim
    s = _bound(sim)
    try:
        mo = sim.inject_mo(MSISDN, CODE, "0000", carrier="data_sm")["id"]
        cid, seq, _ = _next_request(s, answer=False)
        assert cid == 0x103
        s.sendall(_pdu(0x80000000, seq, b"", 0x03))  # generic_nack: the ESME does not know data_sm
        st = sim.wait_mo(mo)
        assert st["state"] == "rejected" and st["last_status"] == 3, st
        mo = sim.inject_mo(MSISDN, CODE, "0000", carrier="data_sm")["id"]
        cid, seq, _ = _next_request(s, answer=False)
        s.sendall(_pdu(0x80000005, seq, b"\0"))  # a deliver_sm_resp does not answer a data_sm
        st = sim.wait_mo(mo)
        assert st["state"] == "rejected" and "wrong resp" in st["last_error"], st
        with pytest.raises(Exception, match="carrier"):
            sim.inject_mo(MSISDN, CODE, "0000", carrier="sms")
        with pytest.raises(Exception, match="one part"):
            sim.inject_mo(MSISDN, CODE, "x" * 400, carrier="data_sm")
    finally:
        s.close()


def test_sequence_numbers_wrap_at_0xffffffff(sim):
    sim.set_profile("default", sequence_start=0xFFFFFFFE, sequence_max=0xFFFFFFFF)
    s = _bound(sim)
    try:
        for _ in range(3):
            sim.inject_mo(MSISDN, CODE, "hi")
        assert [_next_request(s)[1] for _ in range(3)] == [0xFFFFFFFE, 0xFFFFFFFF, 1]
    finally:
        s.close()
    sim.set_profile("default")
    s = _bound(sim)
    try:
        sim.inject_mo(MSISDN, CODE, "hi")
        cid, seq, m = _next_request(s)
        assert seq == 1 and m["service_type"] == b"" and 0x0204 in m["tlvs"] and m["short_message"] == b"hi"
    finally:
        s.close()


def _submit_dlr(seq: int, to: str = MSISDN, text: str = "hi") -> bytes:
    from smsbot import pdu
    from smsbot.messages import SubmitSm

    return pdu.encode_submit_sm(SubmitSm(source_addr=CODE, destination_addr="86" + to, short_message=text.encode(),
                                         data_coding=0, registered_delivery=1), seq)


def test_field_receipts_dc8_ascii_without_tlvs_and_reused_ids(field_sim):
    sim = field_sim
    sim.set_profile(None, message_id_cycle=2, receipt_outcomes={"13900000001": "UNDELIV:034"})
    s = _bound(sim)
    try:
        mids = []
        for i, to in enumerate((MSISDN, "13900000001", MSISDN), 1):
            s.sendall(_submit_dlr(i, to))
            while True:
                cid, st, seq, body = _read_pdu(s)
                if cid == 0x80000004:
                    mids.append(body.rstrip(b"\0").decode())
                    break
            cid, _seq, r = _next_request(s)
            assert cid == 0x05 and r["esm_class"] == 0x04
            assert r["data_coding"] == 8 and r["tlvs"] == {} and r["service_type"] == b"CMT_FLD8"
            text = r["short_message"].decode("ascii")  # ASCII, whatever data_coding says
            assert text.startswith(f"id:{mids[-1]} ")
            assert ("stat:UNDELIV err:034" if to != MSISDN else "stat:DELIVRD err:000") in text, text
        assert mids[0] == mids[2] != mids[1], "ids cycle"
        sim.restart_message_ids()
        s.sendall(_submit(9))
        assert _read_pdu(s)[3].rstrip(b"\0").decode() == mids[0]
    finally:
        s.close()


def test_profile_control_api(sim):
    code, body = _http(sim, "GET", "/profile")
    assert code == 200 and body["profile"] == "default" and body["flags"]["data_sm_every"] == 0
    code, body = _http(sim, "POST", "/profile", {"profile": "field", "data_sm_every": 0})
    assert code == 200 and body["profile"] == "field" and body["overrides"] == {"data_sm_every": 0}
    assert body["flags"]["service_type"] == "CMT_FLD8" and sim.behaviour.receipt_tlvs is False
    code, body = _http(sim, "POST", "/profile", {"receipt_tlvs": True, "sequence_start": "0x80000000"})
    assert code == 200 and body["profile"] == "field" and body["flags"]["sequence_start"] == 0x80000000
    assert body["flags"]["receipt_tlvs"] is True and body["flags"]["data_sm_every"] == 0
    for bad in ({"profile": "wild"}, {"nope": 1}, {"payload_nul": 1}, {"sequence_start": 0},
                {"receipt_outcomes": {MSISDN: "LOST"}}, {"message_id_cycle": -1}, {"profile": 3}):
        code, err = _http(sim, "POST", "/profile", bad)
        assert code == 400 and err["error"], bad
    assert _http(sim, "POST", "/message_ids/restart") == (200, {"restarted": True})
    code, err = _http(sim, "POST", "/partial", {})
    assert code == 400 and "bind" in err["error"]
    code, err = _http(sim, "POST", "/mo", {"from": MSISDN, "to": CODE, "text": "x", "carrier": "mms"})
    assert code == 400
    with pytest.raises(Exception, match="unknown profile"):
        SimSmsc(SimulatorSettings(smpp_port=0, control_port=0), profile="wild")


def test_partial_pdu_then_silence(sim):
    s = _bound(sim)
    try:
        code, info = _http(sim, "POST", "/partial", {"length": 60000, "octets": 40})
        assert code == 200 and info["announced"] == 60000
        got = b""
        s.settimeout(2)
        while len(got) < 56:
            got += s.recv(56 - len(got))
        length, cid, _st, seq = struct.unpack(">IIII", got[:16])
        assert (length, cid, seq) == (60000, 0x05, info["sequence"])
        mo = sim.inject_mo(MSISDN, CODE, "0000")["id"]
        s.sendall(_pdu(0x15, 77))  # nothing is answered any more
        s.settimeout(1.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        assert sim.mo_status(mo)["state"] == "queued", "the wedged bind gets no MO"
        s2 = _bound(sim)  # the ESME's next bind gets it
        try:
            cid, _seq, m = _next_request(s2)
            assert m["short_message"] == b"0000"
            assert sim.wait_mo(mo)["state"] == "delivered"
        finally:
            s2.close()
        assert sim.stats()["partials_sent"] == 1
    finally:
        s.close()


def test_naive_split_cuts_a_surrogate_pair(sim):
    e = Esme(sim)
    try:
        text = "1" + " " * 65 + "\U0001d7d1" + " " * 10
        safe = sim.inject_mo(MSISDN, CODE, text)
        naive = sim.inject_mo(MSISDN, CODE, text, naive_split=True)
        assert safe["parts"] == naive["parts"] == 2
        got = e.wait_received(4)
        first_safe, first_naive = got[0].short_message[6:], got[2].short_message[6:]
        assert 0xD8 <= first_naive[-2] <= 0xDB, "the naive split ends part 1 inside the surrogate pair"
        assert not 0xD8 <= first_safe[-2] <= 0xDB
        joined = b"".join(p.short_message[6:] for p in got[2:4]).decode("utf-16-be")
        assert joined == text
    finally:
        e.close()


def test_lost_resp_redelivers_on_the_next_bind(sim):
    s = _bound(sim)
    try:
        mo = sim.inject_mo(MSISDN, CODE, "1", lost_resp=True)["id"]
        cid, seq1, m1 = _next_request(s)
        assert _eof(s), "the link is dropped right after the resp"
    finally:
        s.close()
    s = _bound(sim)
    try:
        cid, seq2, m2 = _next_request(s)
        assert m2 == m1, "the identical MO again"
        st = sim.wait_mo(mo)
        assert st["state"] == "delivered" and st["redeliveries"] == 1 and st["attempts"] == 2, st
    finally:
        s.close()
