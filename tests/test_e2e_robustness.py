"""End to end over SMPP: redelivery, races, long MOs, vendor TLVs, odd encodings, bad PDUs,
an SMSC restart mid-conversation, Redis down, and a failing handler. Nothing is lost or done twice.
"""

from __future__ import annotations

import json
import threading

import pytest

from smsbot import embedded
from smsbot.messages import CommandId, Status
from smsbot.simulator.smsc import SimSmsc

from .conftest import World
from .helpers import wait_until
from .state import audit_entries, subs_state

MSISDN = "13800138000"


def test_same_mo_twice_on_a_live_link_is_answered_twice_and_applied_once(world: World):
    """The same deliver_sm again on the same bind after its resp was taken: nothing says it is not
    the person sending the same text again, so it is answered again (README: duplicates); the
    cancel itself is idempotent, so the state changes once."""
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    phone.ask("0000")
    phone.send("1", duplicate=True)
    replies = phone.expect(2)
    assert "您已成功退订视频会员包月" in replies[0]["text"]
    assert "已退订" in replies[1]["text"], replies
    assert world.sim.stats()["mo_duplicates_sent"] >= 1
    cancels = [e for e in audit_entries(world, MSISDN) if e["new"] == "cancelled"]
    assert len(cancels) == 1


def test_racing_replies_cancel_once(world: World):
    """Two handlers racing on the same menu item (e.g. two instances): the Lua step is atomic."""
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    world.handset(MSISDN).ask("0000")
    store = world.bot.store
    outcomes: list[str] = []

    def cancel_first() -> None:
        call = store.mo_call("reply", MSISDN, "10086", args={"numbers": [1], "text": "1"})
        outcomes.append(store.run_one(call).outcome)

    threads = [threading.Thread(target=cancel_first) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already_cancelled"] * 7 + ["cancelled"]
    assert len([e for e in audit_entries(world, MSISDN) if e["new"] == "cancelled"]) == 1


def test_same_text_twice_as_new_messages_is_not_a_duplicate(world: World):
    world.subscribe(MSISDN, "VIDEO")
    phone = world.handset(MSISDN)
    assert "视频会员包月" in phone.ask("0000")
    assert "视频会员包月" in phone.ask("0000"), "a real second 0000 (new message reference) gets its own answer"


@pytest.mark.parametrize("split", ["udh8", "udh16", "sar"])
def test_long_mo_reassembled_out_of_order_and_interleaved(world: World, split: str):
    world.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    other = "13900000077"
    world.subscribe(other, "NEWS")
    phone, other_phone = world.handset(MSISDN), world.handset(other)
    phone.ask("0000")
    other_phone.send("0000")
    # only the whole text cancels both 1 and 3: the second number sits in the last part
    long_reply = "1" + " " * 300 + "3"
    info = phone.h._request("POST", "/mo", {"from": MSISDN, "to": "10086", "text": long_reply, "split": split, "shuffle": True})
    other_phone.send("1")
    reply = phone.expect(1)[0]["text"]
    assert "您已成功退订视频会员包月" in reply and "您已成功退订手机早晚报" in reply, reply
    assert info["parts"] >= 2
    assert subs_state(world, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active", "NEWS": "cancelled"}
    texts = [m["text"] for m in other_phone.expect(2)]
    assert any("您已成功退订手机早晚报" in t for t in texts)


def test_unknown_vendor_tlv_does_not_break_the_loop(world: World):
    world.subscribe(MSISDN, "VIDEO")
    phone = world.handset(MSISDN)
    phone.send("0000", tlvs={"0x1401": "abcdef", "0x3fff": ""})
    assert "视频会员包月" in phone.expect(1)[0]["text"]
    assert "视频会员包月" in phone.ask("0000")


@pytest.mark.parametrize("coding,text", [(8, "００００"), (3, "0000"), (0, "0000")])
def test_encodings_of_mo(world: World, coding: int, text: str):
    world.subscribe(MSISDN, "NEWS")
    phone = world.handset(MSISDN)
    phone.send(text, data_coding=coding)
    assert "1. 手机早晚报" in phone.expect(1)[0]["text"]


def test_chinese_help_keyword_and_english_reply_is_gsm7(make_world):
    w = make_world(short_codes=[{"code": "10086", "commands": ["subscriptions", "help"], "language": "en"}])
    w.subscribe(MSISDN, "VIDEO")
    phone = w.handset(MSISDN)
    phone.send("帮助")
    msg = phone.expect(1)[0]
    assert "Welcome to 10086" in msg["text"]
    assert msg["data_coding"] == 0, "an English reply fits GSM-7"
    assert "1. Video monthly 15 yuan/month" in phone.ask("0000")


def test_malformed_deliver_sm_is_refused_and_the_bot_keeps_serving(world: World, caplog, capfd):
    world.subscribe(MSISDN, "VIDEO")
    # a deliver_sm whose short_message length runs past the end of the PDU: it will never decode,
    # so the refusal is permanent, and logged with the reason and the PDU, the number masked
    body = b"\x00\x00\x00" + MSISDN.encode() + b"\x00\x00\x00" + b"10086\x00" + bytes([0, 0, 0]) + b"\x00\x00\x00\x00\x00\x00" + bytes([200]) + b"abc"
    with caplog.at_level("ERROR", logger="smsbot.session"):
        res = world.sim.inject_raw(body, command_id=CommandId.DELIVER_SM, wait=3)
    assert res["resp_command_id"] == CommandId.DELIVER_SM_RESP
    assert res["resp_status"] == Status.RX_P_APPN
    out, err = capfd.readouterr()  # structlog's own printer before log.setup, the stdlib handler after
    logged = [line for line in [*(r.getMessage() for r in caplog.records), *out.splitlines(), *err.splitlines()]
              if "mo_rejected" in line]
    assert len(logged) == 1 and "sm_length" in logged[0] and "ESME_RX_P_APPN" in logged[0], logged
    assert MSISDN.encode().hex() not in logged[0] and "2a2a2a" in logged[0], "the number is masked in the hex"
    # an unknown request gets generic_nack
    res = world.sim.inject_raw(b"", command_id=0x00000999, wait=3)
    assert res["resp_command_id"] == CommandId.GENERIC_NACK
    assert "视频会员包月" in world.handset(MSISDN).ask("0000")


def test_smsc_restart_mid_conversation(world: World):
    world.subscribe(MSISDN, "VIDEO", "MUSIC")
    phone = world.handset(MSISDN)
    phone.ask("0000")
    port, settings = world.sim.smpp_port, world.settings
    world.sim.stop()
    world.sim = SimSmsc.from_settings(settings, smpp_port=port, control_port=0).start()
    phone = world.handset(MSISDN)
    # the bot reconnects by itself; the open menu lives in Redis, so the reply still cancels
    assert "您已成功退订彩铃音乐包" in phone.ask("2", timeout=15)
    assert world.bot.transport.reconnects >= 1


def test_smsc_drops_connection_and_replies_still_arrive(world: World):
    world.subscribe(MSISDN, "VIDEO")
    phone = world.handset(MSISDN)
    world.sim.drop_connections()
    assert "视频会员包月" in phone.ask("0000", timeout=15)


def refusals(w: World, mo_id: str) -> int:
    """How often the bot answered the SMSC's delivery of `mo_id` with "try again later"."""
    return sum(1 for a in w.sim.mo_status(mo_id)["history"] if a.get("status") == Status.RX_T_APPN)


def test_redis_down_means_try_again_later_then_nothing_lost(make_settings, tmp_path):
    own = tmp_path / "own-redis"
    er = embedded.ensure_running(own)
    settings = make_settings(**{"redis.url": er.url})
    sim = SimSmsc.from_settings(settings).start()
    w = World(settings, sim)
    try:
        w.start_bot()
        w.subscribe(MSISDN, "VIDEO")
        phone = w.handset(MSISDN)
        phone.ask("0000")
        embedded.stop(own)
        mo = phone.send("1")
        # refused with "try again later" (not acknowledged), as often as the SMSC tries
        assert wait_until(lambda: refusals(w, mo) >= 2, 10), w.sim.mo_status(mo)
        assert w.sim.mo_status(mo)["state"] != "delivered"
        embedded.ensure_running(own)  # AOF brings the menu back
        reply = phone.expect(1, timeout=15)[0]["text"]
        assert "您已成功退订视频会员包月" in reply
        assert w.sim.wait_mo(mo, timeout=5)["state"] == "delivered"
    finally:
        w.stop()
        embedded.stop(own)


def test_a_failing_handler_does_not_kill_the_loop(world: World):
    world.subscribe(MSISDN, "VIDEO")
    victim = "13900000099"
    world.subscribe(victim, "NEWS")
    store = world.bot.store
    store.redis.hset(store.keys.subs(victim), "NEWS", b"{not json")
    store.redis.delete(store.keys.subscriber(victim).live)  # the menu index is rebuilt from the records
    phone, vphone = world.handset(MSISDN), world.handset(victim)
    mo = vphone.send("0000")
    assert wait_until(lambda: refusals(world, mo) >= 2, 10), world.sim.mo_status(mo)
    assert world.sim.mo_status(mo)["state"] != "delivered", "a message we could not handle must not be acknowledged"
    assert "视频会员包月" in phone.ask("0000"), "others are still served"
    store.redis.hset(store.keys.subs(victim), "NEWS", json.dumps({"state": "active", "since": 1}))
    assert "手机早晚报" in vphone.expect(1, timeout=10)[0]["text"], "the SMSC's redelivery succeeds once fixed"
