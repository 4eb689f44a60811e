"""Webhooks end to end (issue 24): real flows through the simulated SMSC, the HTTP API and the CLI
reach a real HTTP receiver on loopback, signed, each with its idempotency key; a slow receiver does
not slow the SMS path.

The receiver checks every request with the README's own verification snippet (`readme_verify`),
and a tampered body fails it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from smsbot import billing
from smsbot.app import wait_until
from smsbot.webhooks import signing

from .conftest import REPO, World, cli, write_config
from .test_api import OPS, start_api
from .webhook_receiver import Receiver, Request

MSISDN = "13800138000"
SECRET = "whsec-test-0123456789"


def readme_verify() -> Callable[[str, bytes, str], bool]:
    """The `verify` function of the README's Webhooks section, run as it is printed there."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Webhooks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README's Webhooks section has a Python verification snippet"
    scope: dict[str, Any] = {}
    exec(code.group(1), scope)  # noqa: S102 - the documented snippet, exactly
    return scope["verify"]


def endpoint(url: str, events: list[str], **kw: Any) -> dict[str, Any]:
    return {"name": kw.pop("name", "crm"), "url": url, "events": events, "secret": SECRET,
            "timeout_seconds": kw.pop("timeout_seconds", 2), "backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2, **kw}


def check_signed(verify: Callable[[str, bytes, str], bool], r: Request) -> None:
    ev = r.event
    assert r.headers["Idempotency-Key"] == ev["id"] and r.headers["X-Smsbot-Event"] == ev["type"]
    assert r.headers["Content-Type"].startswith("application/json")
    assert verify(SECRET, r.body, r.headers["X-Smsbot-Signature"]), "a genuine request verifies"
    tampered = bytearray(r.body)
    tampered[len(tampered) // 2] ^= 0x01  # one bit of the body changed
    assert not verify(SECRET, bytes(tampered), r.headers["X-Smsbot-Signature"]), "a tampered body does not verify"
    assert not verify(SECRET, r.body + b" ", r.headers["X-Smsbot-Signature"])
    assert not verify("another-secret-0000", r.body, r.headers["X-Smsbot-Signature"])


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    yield r
    r.close()


def test_real_flows_arrive_signed(make_world: Callable[..., World], receiver: Receiver, tmp_path: Path) -> None:
    verify = readme_verify()
    w = make_world(**{"webhooks": [endpoint(receiver.url, ["*"])], "smsc.registered_delivery": 1})
    api = start_api(w.settings)
    try:
        phone = w.handset(MSISDN)
        # an API order -> the charge reminder -> order.reminded; TD by SMS cancels it: subscription.cancelled (sms, free)
        status, _, out = api.call("POST", "/v1/orders", {"msisdn": MSISDN, "service": "VIDEO", "order_id": "ORD-WH-1"})
        assert status == 202, out
        assert "扣费提醒" in phone.expect(1)[0]["text"]
        reminded = receiver.wait_event("order.reminded")
        assert reminded["data"]["order_id"] == "ORD-WH-1" and reminded["data"]["msisdn"] == MSISDN
        assert reminded["data"]["service"] == "VIDEO" and reminded["data"]["first_charge_due"] > reminded["at"]
        assert "退订" in phone.ask("TD")
        cancelled = receiver.wait_event("subscription.cancelled", lambda e: e["data"]["service"] == "VIDEO")
        assert cancelled["data"]["via"] == "sms" and cancelled["data"]["how"] == "free" and cancelled["data"]["order_id"] == "ORD-WH-1"
        # the 0000 menu and a number: cancelled by SMS too
        w.subscribe(MSISDN, "MUSIC", "NEWS")
        assert "彩铃音乐包" in phone.ask("0000")
        assert "退订" in phone.ask("1")
        menu_cancel = receiver.wait_event("subscription.cancelled", lambda e: e["data"]["service"] == "MUSIC")
        assert menu_cancel["data"]["via"] == "sms"
        # customer care over the API, and with the CLI
        assert api.call("DELETE", f"/v1/subscribers/{MSISDN}/subscriptions/NEWS")[0] == 200
        by_api = receiver.wait_event("subscription.cancelled", lambda e: e["data"]["service"] == "NEWS")
        assert by_api["data"]["via"] == "api" and by_api["data"]["correlation"] == "api:ops"
        cfg = write_config(w, tmp_path)
        w.subscribe(MSISDN, "GAME")
        assert cli(cfg, "subs", "remove", MSISDN, "GAME").returncode == 0
        assert receiver.wait_event("subscription.cancelled", lambda e: e["data"]["service"] == "GAME")["data"]["via"] == "care"
        # a complaint: ticket.opened with the words as typed; resolved by `smsbot tickets resolve`
        assert "投诉编号" in phone.ask("TS 上个月多扣了5元！")
        opened = receiver.wait_event("ticket.opened")
        assert opened["data"]["text"] == "上个月多扣了5元！" and opened["data"]["msisdn"] == MSISDN
        ticket = opened["data"]["ticket"]
        done = cli(cfg, "tickets", "resolve", ticket, "--reply", "已退还。", "--by", "agent7")
        assert done.returncode == 0, done.stderr
        resolved = receiver.wait_event("ticket.resolved")
        assert resolved["data"] == {"ticket": ticket, "msisdn": MSISDN, "answer": "已退还。", "by": "agent7"}
        # receipts of the replies (registered_delivery 1; the simulator sends DELIVRD)
        receipt = receiver.wait_event("mt.receipt", lambda e: e["data"].get("template") == "complaints.opened")
        assert receipt["data"]["state"] == "DELIVRD" and receipt["data"]["matched"] and receipt["data"]["message_id"]
        assert receipt["data"]["msisdn"] in (MSISDN, "86" + MSISDN)
        # a billing run charges the live subscription added by `subs add`: charge.recorded
        w.subscribe(MSISDN, "READ")
        billing.run(w.settings, w.bot.store, int(time.time() * 1000))
        charge = receiver.wait_event("charge.recorded", lambda e: e["data"]["service"] == "READ")
        assert charge["data"]["fen"] == 500 and charge["data"]["period"]
        # a notice the SMSC refuses for good: notice.rejected with the id the API answered
        w.sim.set_faults(reject={"13900139000": "0x0B"})
        status, _, notice = api.call("POST", "/v1/notices", {"msisdn": "13900139000", "text": "维护通知"})
        assert status == 202, notice
        rejected = receiver.wait_event("notice.rejected")
        assert rejected["data"]["notice_id"] == notice["id"] and rejected["data"]["status"] == "0xb"
        assert rejected["data"]["msisdn"] == "13900139000"
    finally:
        api.stop()
    requests = receiver.requests
    for r in requests:
        check_signed(verify, r)
    ids = [r.event["id"] for r in requests]
    assert len(set(ids)) == len(ids), "each event once while nothing failed"
    assert all(r.headers["X-Smsbot-Attempt"] == "1" for r in requests)
