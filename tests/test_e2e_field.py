"""End to end against the simulator's ``field`` profile: the SMSCs of issue 10.

Under it every MO comes without a user_message_reference and with an 8-octet service_type, sequence
numbers start at 0xFFFFFFF0 and wrap at 0xFFFFFFFF, single-part MOs carry their text in
message_payload followed by a NUL, every 3rd single-part MO is a data_sm, receipts say data_coding 8
over ASCII text and carry no receipt TLVs, and message ids repeat. Each test names the issue item it
proves; all of it goes through real SMPP over loopback with the bot (`smsbot.app.Bot`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from smsbot import config
from smsbot.app import Bot
from .helpers import wait_until
from smsbot.msisdn import subscriber_key
from smsbot.simulator.smsc import SimSmsc

from .conftest import World, cli, write_config
from .state import audit_entries, subs_state

MSISDN = "13800138000"
OTHER = "13900000001"
MENU_HEAD = "尊敬的客户，您已订购的包月业务如下："


@pytest.fixture
def make_field_world(make_settings: Callable[..., config.Settings]) -> Iterator[Callable[..., World]]:
    """A simulator in the field profile (`flags` on top) and a bound bot; stopped at teardown."""
    worlds: list[World] = []

    def make(flags: dict[str, Any] | None = None, profile: str = "field", **overrides: Any) -> World:
        settings = make_settings(**overrides)
        sim = SimSmsc.from_settings(settings, profile=profile, flags=flags).start()
        w = World(settings, sim)
        worlds.append(w)
        bot = Bot(w.bot_settings()).start()
        w.bots.append(bot)
        if not bot.wait_bound(10):
            bot.stop()  # before failing: see make_tls_world in test_e2e_tls
            pytest.fail("the bot did not bind to the field-profile simulator")
        return w

    yield make
    for w in worlds:
        w.stop()


@pytest.fixture
def field_world(make_field_world: Callable[..., World]) -> World:
    return make_field_world()


def mo_delivered(world: World, mo_id: str, timeout: float = 10.0) -> dict[str, Any]:
    st = world.sim.wait_mo(mo_id, timeout=timeout)
    assert st is not None and st["state"] == "delivered", st
    return st


def user_data_of(wire_hex: str) -> tuple[int, bytes, dict[int, bytes]]:
    """(command_id, short_message, TLVs) of a deliver_sm / data_sm as the simulator wrote it."""
    raw = bytes.fromhex(wire_hex)
    cid = int.from_bytes(raw[4:8], "big")
    body = raw[16:]
    p = body.index(b"\0") + 1 + 2
    p = body.index(b"\0", p) + 1 + 2
    p = body.index(b"\0", p) + 1
    if cid == 0x103:
        p += 3
        sm = b""
    else:
        p += 3
        p = body.index(b"\0", p) + 1
        p = body.index(b"\0", p) + 1
        n = body[p + 4]
        p += 5
        sm, p = body[p : p + n], p + n
    tlvs = {}
    while p < len(body):
        tag, n = int.from_bytes(body[p : p + 2], "big"), int.from_bytes(body[p + 2 : p + 4], "big")
        tlvs[tag], p = body[p + 4 : p + 4 + n], p + 4 + n
    return cid, sm, tlvs


def mt_records(world: World, message_id: str) -> list[dict[str, str]]:
    """Every MT record the bot keeps under SMSC message id `message_id` (merged with its receipt).

    Uses `Store.mt_records(message_id) -> list[dict]` when the store has it (records that a reused
    id cannot overwrite, issue 10 item 6), else the one record `Store.mt_record` returns."""
    store = world.bot.store
    many = getattr(store, "mt_records", None)
    if many is not None:
        return list(many(message_id))
    rec = store.mt_record(message_id)
    return [rec] if rec else []


# ------------------------------------------------------------------------------------------------
# the main flows


def test_menu_and_numeric_cancel(field_world: World):
    """0000 and a numeric cancel, both as deliver_sm with an 8-octet service_type, no TP-MR,
    message_payload ending in NUL, sequence numbers above 0x7FFFFFFF (items 2 and 4)."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    menu = phone.ask("0000")
    assert menu.startswith(MENU_HEAD) and "1. 视频会员包月 15元/月" in menu and "3. 手机早晚报 3元/月" in menu, menu
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
    assert subs_state(w, MSISDN) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "active"}
    assert phone.quiet() == []
    st = w.sim.stats()
    assert st["mo_delivered"] == 2 and st["mo_rejected"] == 0 and st["mo_redelivered"] == 0, st


def test_repeated_menu_and_cancels_each_answered(field_world: World):
    """Issue 10 item 1: `0000`, `2`, `0000`, `2`, `0000` without message references (the 3rd is a
    data_sm): every one answered, the second `2` cancels item 2 of the NEW menu."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    first = phone.ask("0000")
    assert "2. 彩铃音乐包" in first, first
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
    second = phone.ask("0000")
    assert second.startswith(MENU_HEAD) and "1. 视频会员包月" in second and "2. 手机早晚报" in second, second
    assert "彩铃音乐包" not in second
    assert "您已成功退订手机早晚报" in phone.ask("2")
    third = phone.ask("0000")
    assert "1. 视频会员包月" in third and "2." not in third, third
    assert subs_state(w, MSISDN) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "cancelled"}
    assert phone.quiet() == []


def test_repeated_text_without_message_reference(make_field_world: Callable[..., World]):
    """Issue 10 item 1 alone: a tidy SMSC that only leaves out user_message_reference."""
    w = make_field_world(profile="default", flags={"user_message_reference": False})
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    assert "2. 彩铃音乐包" in phone.ask("0000")
    assert "您已成功退订彩铃音乐包" in phone.ask("2")
    again = phone.ask("0000")
    assert "2. 手机早晚报" in again, "the second 0000 gets its own answer"
    assert "您已成功退订手机早晚报" in phone.ask("2"), "a 2 sent to the new menu is not a duplicate"
    assert subs_state(w, MSISDN) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "cancelled"}


def test_same_text_twice_in_a_row_gets_two_answers(field_world: World):
    """Issue 10 item 1: a person who sends the same text twice gets two answers."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    phone.send("0000", carrier="deliver_sm")
    phone.send("0000", carrier="deliver_sm")
    got = phone.expect(2, timeout=15)
    assert [m["text"].startswith(MENU_HEAD) for m in got] == [True, True], got


def test_redelivery_after_a_lost_resp_applies_once(field_world: World):
    """Issue 10 item 1, the other half: the bot's resp to `1` is lost with the link, so the SMSC
    delivers the identical MO (no message reference) again on the next bind. The cancel is applied
    once and answered with its confirmation (never "already cancelled"): once, or twice when the
    first had gone out before the redelivery came (counted as a copy)."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = w.handset(MSISDN)
    assert "1. 视频会员包月" in phone.ask("0000", carrier="deliver_sm")
    mo = phone.send("1", carrier="deliver_sm", lost_resp=True)
    replies = phone.expect(1, timeout=15)
    st = mo_delivered(w, mo, timeout=15)
    assert st["redeliveries"] == 1 and w.sim.stats()["binds_total"] >= 2, st
    replies += phone.quiet()
    texts = [m["text"] for m in replies]
    assert len(texts) == 1 + w.bot.metrics.reply_copies._value.get() <= 2, texts
    assert all("您已成功退订视频会员包月" in t and "无需重复操作" not in t for t in texts), texts
    assert subs_state(w, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active"}
    assert len([e for e in audit_entries(w, MSISDN) if e["new"] == "cancelled"]) == 1
    menu = phone.ask("0000", carrier="deliver_sm")
    assert "1. 彩铃音乐包" in menu and "视频会员包月" not in menu, "and the next 0000 is answered: MUSIC alone is left"


def test_long_ucs2_mo_with_a_surrogate_pair_across_parts(field_world: World):
    """Issue 10 item 8: the handset cut a UCS-2 text between the two halves of a surrogate pair
    (U+1D7D1, a mathematical bold 3, which NFKC reads as 3). Decoded once joined, it cancels 1 and 3."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    assert "3. 手机早晚报" in phone.ask("0000")
    text = "1" + " " * 65 + "\U0001d7d1" + " " * 10
    mo = phone.send(text, naive_split=True)
    reply = "\n".join(m["text"] for m in phone.expect(1))
    st = mo_delivered(w, mo)
    assert st["parts"] == 2
    _cid, first, _ = user_data_of(st["wire"][0])
    assert 0xD8 <= first[-2] <= 0xDB, "premise: part 1 ends with the high surrogate"
    assert "您已成功退订视频会员包月" in reply and "您已成功退订手机早晚报" in reply, reply
    assert subs_state(w, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active", "NEWS": "cancelled"}


def test_data_sm_mo(field_world: World):
    """Issue 10 item 5: an MO carried by data_sm is handled like a deliver_sm (data_sm_resp)."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = w.handset(MSISDN)
    mo = phone.send("0000", carrier="data_sm")
    menu = "\n".join(m["text"] for m in phone.expect(1))
    assert menu.startswith(MENU_HEAD) and "2. 彩铃音乐包" in menu, menu
    st = mo_delivered(w, mo)
    assert st["carrier"] == "data_sm" and st["attempts"] == 1, st
    assert user_data_of(st["wire"][0])[0] == 0x103
    mo = phone.send("1", carrier="data_sm")
    assert "您已成功退订视频会员包月" in "\n".join(m["text"] for m in phone.expect(1))
    mo_delivered(w, mo)
    assert w.sim.stats()["mo_data_sm_sent"] == 2


def test_message_payload_with_trailing_nul(field_world: World):
    """Issue 10 item 4: `0000\\0` in message_payload is 0000."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    mo = phone.send("0000", carrier="deliver_sm")
    menu = "\n".join(m["text"] for m in phone.expect(1))
    st = mo_delivered(w, mo)
    cid, sm, tlvs = user_data_of(st["wire"][0])
    assert (cid, sm, tlvs.get(0x0424)) == (0x05, b"", b"0000\0"), "premise: the text is `0000\\0` in message_payload"
    assert 0x0204 not in tlvs
    assert menu.startswith(MENU_HEAD) and "1. 视频会员包月" in menu, menu


def test_sequence_numbers_above_0x7fffffff_and_wrapping(make_field_world: Callable[..., World]):
    """Issue 10 item 2 (liberal decoding): sequence numbers up to 0xFFFFFFFF are echoed, and the
    SMSC's wrap back to 1 is followed; nothing is redelivered for want of a resp."""
    w = make_field_world(flags={"sequence_start": 0xFFFFFFFC, "data_sm_every": 0})
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    seqs = []
    for text in ("0000", "00000", "００００", "HELP", "帮助", "?"):  # six texts: no repeat (item 1) in play
        mo = phone.send(text)
        assert len(phone.expect(1)) == 1
        st = mo_delivered(w, mo)
        assert st["attempts"] == 1, st
        seqs.append(st["history"][-1]["seq"])
    assert seqs[0] >= 0xFFFFFFFC and 1 <= seqs[-1] < 0x10, [hex(s) for s in seqs]
    assert w.sim.stats()["mo_redelivered"] == 0


def test_receipt_dc8_without_tlvs_sets_mt_state(make_field_world: Callable[..., World], tmp_path: Path):
    """Issue 10 item 3: receipts with data_coding 8 over ASCII text and no receipt TLVs are read
    from the text, error code kept; `smsbot mt show` shows the state."""
    w = make_field_world(flags={"receipt_outcomes": {OTHER: "UNDELIV:034"}}, **{"smsc.registered_delivery": 1})
    w.subscribe(MSISDN, "VIDEO")
    w.subscribe(OTHER, "VIDEO")
    ok_msg = _menu_message(w, MSISDN)
    bad_msg = _menu_message(w, OTHER)
    ok_id, bad_id = ok_msg["message_ids"][0], bad_msg["message_ids"][0]
    assert ok_id != bad_id

    def state(mid: str, to: str) -> dict[str, str]:
        recs = [r for r in mt_records(w, mid) if subscriber_key(r.get("to", "")) == to]  # 86…: as the MO came
        return recs[-1] if recs else {}

    assert wait_until(lambda: state(ok_id, MSISDN).get("state") == "DELIVRD", 10), mt_records(w, ok_id)
    assert wait_until(lambda: state(bad_id, OTHER).get("state") == "UNDELIV", 10), mt_records(w, bad_id)
    assert state(bad_id, OTHER).get("err") == "034", "the error code is kept"
    assert state(ok_id, MSISDN).get("err") in ("000", "0"), state(ok_id, MSISDN)
    assert w.sim.stats()["receipts_sent"] >= 2
    cfg = write_config(w, tmp_path)
    shown = cli(cfg, "mt", "show", bad_id)
    assert shown.returncode == 0 and "state\tUNDELIV" in shown.stdout, shown.stdout + shown.stderr
    assert "034" in shown.stdout


def _menu_message(w: World, msisdn: str) -> dict[str, Any]:
    phone = w.handset(msisdn)
    phone.send("0000", carrier="deliver_sm")
    msg = phone.expect(1)[0]
    assert msg["text"].startswith(MENU_HEAD), msg
    return msg


def test_reused_message_ids_receipts_reach_the_right_mt(make_field_world: Callable[..., World]):
    """Issue 10 item 6: the SMSC restarts its message ids, so B's menu gets the ids A's menu had.
    A's record is not overwritten, and each receipt (A's delivered, B's undeliverable) updates its own MT."""
    w = make_field_world(flags={"receipt_outcomes": {OTHER: "UNDELIV:034"}, "message_id_cycle": 0},
                         **{"smsc.registered_delivery": 1})
    w.subscribe(MSISDN, "VIDEO", "MUSIC")
    w.subscribe(OTHER, "NEWS", "GAME")
    a_ids = _menu_message(w, MSISDN)["message_ids"]

    def records(mid: str, to: str) -> list[dict[str, str]]:
        return [r for r in mt_records(w, mid) if subscriber_key(r.get("to", "")) == to]

    assert wait_until(lambda: all(any(r.get("state") == "DELIVRD" for r in records(m, MSISDN)) for m in a_ids), 10), \
        {m: mt_records(w, m) for m in a_ids}
    w.sim.restart_message_ids()
    b_ids = _menu_message(w, OTHER)["message_ids"]
    shared = sorted(set(a_ids) & set(b_ids))
    assert shared, f"premise: ids reused ({a_ids} / {b_ids})"
    assert wait_until(lambda: all(any(r.get("state") == "UNDELIV" for r in records(m, OTHER)) for m in b_ids), 10), \
        {m: mt_records(w, m) for m in b_ids}
    for mid in shared:
        a, b = records(mid, MSISDN), records(mid, OTHER)
        assert len(a) == 1 and a[0].get("state") == "DELIVRD", f"A's MT {mid} kept its own record and receipt: {mt_records(w, mid)}"
        assert len(b) == 1 and b[0].get("state") == "UNDELIV" and b[0].get("err") == "034", mt_records(w, mid)
        assert a[0].get("correlation") != b[0].get("correlation")


def test_partial_pdu_drops_the_link_and_rebinds(make_field_world: Callable[..., World]):
    """Issue 10 item 7: a header announcing 60,000 octets, a short body, then silence. The bot
    must drop the link within smsc.response_timeout (3 s here) and rebind; the next MO is answered.
    enquire_link is 30 s apart, so only the framing timeout can save the link in time."""
    w = make_field_world(**{"smsc.response_timeout": 3, "smsc.enquire_link_interval": 30})
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    assert phone.ask("0000").startswith(MENU_HEAD)
    binds_before = w.sim.stats()["binds_total"]
    info = w.sim.send_partial(60000, 40)
    assert info["announced"] == 60000
    t0 = time.monotonic()
    mo = phone.send("0000", carrier="deliver_sm")
    got = phone.expect(1, timeout=15)
    elapsed = time.monotonic() - t0
    assert got[0]["text"].startswith(MENU_HEAD)
    assert w.sim.stats()["binds_total"] > binds_before, "a new bind after the partial PDU"
    assert w.bot.transport.reconnects >= 1
    assert mo_delivered(w, mo)["attempts"] == 1
    assert elapsed < 12, f"answered {elapsed:.1f} s after the partial PDU"


def test_no_mo_rejected_under_the_field_profile(field_world: World):
    """Issue 10 item 2: an 8-octet service_type on every MO and receipt never earns a rejection."""
    w = field_world
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    for text in ("0000", "HELP", "0000"):  # the 3rd is a data_sm
        mo = phone.send(text)
        assert phone.expect(1)
        st = mo_delivered(w, mo)
        assert st["last_status"] == 0
    assert w.sim.stats()["mo_rejected"] == 0
    assert json.dumps(w.sim.describe_profile()["flags"]["service_type"]) == '"CMT_FLD8"'


def test_pdu_announcing_more_than_the_maximum_drops_the_link_at_once(make_field_world: Callable[..., World]):
    """A header announcing more than smsc.max_pdu_bytes is a corrupt stream: the bot drops the link
    as soon as it sees the header (not after the response timeout, 30 s here) and binds again."""
    w = make_field_world(**{"smsc.response_timeout": 30, "smsc.max_pdu_bytes": 4096})
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    assert phone.ask("0000").startswith(MENU_HEAD)
    binds_before = w.sim.stats()["binds_total"]
    w.sim.send_partial(5000, 40)
    t0 = time.monotonic()
    assert phone.ask("0000", carrier="deliver_sm", timeout=15).startswith(MENU_HEAD)
    assert time.monotonic() - t0 < 10
    assert w.sim.stats()["binds_total"] > binds_before and w.bot.transport.reconnects >= 1


# -- strict in what we send: the addresses of MTs -----------------------------------------------------------
@pytest.mark.parametrize("profile", ["default", "field"])
def test_mts_are_addressed_internationally_whatever_form_the_number_came_in(make_field_world: Callable[..., World], profile: str):
    """Replies (to an MO from 13800138000 under TON 2, or 8613800138000 under TON 1 in the field
    profile), charge reminders and notices all go to 8613800138000 under TON 1 / NPI 1. The
    simulator reads destinations as a strict SMSC: national digits under TON 1 would be +1 380…
    and reach no handset here (what smsbot once sent)."""
    w = make_field_world(profile=profile)
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    assert "视频会员包月" in phone.ask("0000")
    st = w.bot.store
    st.redis.xadd(st.keys.order_events(), {"order_id": f"ORD-TON-{profile}", "msisdn": OTHER, "service": "NEWS"})
    assert "扣费提醒" in w.handset(OTHER).expect(1, timeout=15)[0]["text"]
    log = w.sim.submit_log()
    assert {e["to"] for e in log} == {MSISDN, OTHER}, log
    assert {tuple(e["addr"]) for e in log} == {("86" + MSISDN, 1, 1), ("86" + OTHER, 1, 1)}, log


def test_mts_addressed_nationally_when_configured(make_field_world: Callable[..., World]):
    w = make_field_world(profile="field", **{"smsc.dest_addr_ton": 2})
    w.subscribe(MSISDN, "VIDEO")
    assert "视频会员包月" in w.handset(MSISDN).ask("0000")  # the MO came as 8613800138000, TON 1
    assert {tuple(e["addr"]) for e in w.sim.submit_log()} == {(MSISDN, 2, 1)}
