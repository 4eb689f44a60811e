"""Webhooks end to end (issue 24): real flows through the simulated SMSC, the HTTP API and the CLI
reach a real HTTP receiver on loopback, signed, each with its idempotency key; a slow receiver does
not slow the SMS path.

The receiver checks every request with the docs' own verification snippet (`documented_verify`, docs/webhooks.md),
and a tampered body fails it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from commands.orders.events import write_order
from smsbot import billing
from .helpers import wait_until

from .conftest import World, cli, write_config
from .api_client import start_api
from .webhook_receiver import SECRET, Receiver, Request, documented_verify, endpoint

MSISDN = "13800138000"


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
    verify = documented_verify()
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


def _order_events(w: World, n: int, tag: str) -> list[str]:
    """`n` order events (each subscriber's own), as `smsbot order` writes them; their order ids."""
    ids = []
    for i in range(n):
        oid = f"ORD-{tag}-{i}"
        write_order(w.settings, w.bot.store.redis, f"1390000{i:04d}", "VIDEO", int(time.time() * 1000), oid)
        ids.append(oid)
    return ids


def _sample(w: World, name: str, **labels: str) -> float:
    return w.bot.metrics.registry.get_sample_value(name, labels) or 0.0


def test_receiver_outage_loses_nothing(make_world: Callable[..., World], receiver: Receiver) -> None:
    """The receiver is down (connections refused) while 20 events happen: each is tried again with
    backoff; once it is up every event arrives, once each."""
    w = make_world(**{"webhooks": [endpoint(receiver.url, ["order.reminded"], max_attempts=1000)]})
    receiver.down()
    orders = _order_events(w, 20, "OUT")
    # every event was tried at least twice while the receiver was down (its first attempt surely failed)
    tries = w.bot.store.keys.webhook_tries("crm")
    redis = w.bot.store.redis
    assert wait_until(lambda: redis.hlen(tries) == 20 and all(int(v) >= 2 for v in redis.hvals(tries)), 20)
    assert _sample(w, "smsbot_webhook_failures_total", endpoint="crm", reason="connection") >= 20
    jobs = w.bot.webhooks.jobs
    assert jobs.counts("crm") == (20, 0)
    receiver.start()
    got = receiver.wait(lambda rs: len({r.event["id"] for r in rs}) >= 20)
    assert sorted(r.event["data"]["order_id"] for r in got) == sorted(orders), "every event once, none lost"
    assert all(int(r.headers["X-Smsbot-Attempt"]) >= 2 for r in got)
    assert wait_until(lambda: jobs.counts("crm") == (0, 0), 5)
    w.bot.refresh_gauges()
    assert _sample(w, "smsbot_webhook_backlog", endpoint="crm") == 0
    assert _sample(w, "smsbot_webhook_deliveries_total", endpoint="crm", result="delivered") == 20


def test_dead_letters_listed_and_replayed_by_cli_and_api(make_world: Callable[..., World], tmp_path: Path) -> None:
    """An endpoint answering 500 uses up its attempts: the events become dead letters, shown by
    `smsbot webhooks list` and GET /v1/webhooks/dead-letters; replayed by `smsbot webhooks retry`
    and the API's replay once the receiver works, they arrive."""
    failing = {"on": True}
    receiver = Receiver(lambda _r: 500 if failing["on"] else 204)
    w = make_world(**{"webhooks": [endpoint(receiver.url, ["order.reminded"], max_attempts=2)]})
    api = start_api(w.settings)
    try:
        _order_events(w, 2, "DEAD")
        jobs = w.bot.webhooks.jobs
        assert wait_until(lambda: jobs.counts("crm") == (0, 2), 20)
        cfg = write_config(w, tmp_path)
        listed = cli(cfg, "webhooks", "list")
        assert listed.returncode == 0, listed.stderr
        assert "endpoint crm\tevents order.reminded\twaiting 0\tdead letters 2" in listed.stdout
        assert listed.stdout.count("order.reminded\t2 attempts\tHTTP 500: ok") == 2, listed.stdout
        letters = [json.loads(line) for line in cli(cfg, "webhooks", "list", "--json").stdout.splitlines()]
        assert len(letters) == 2 and all(d["event"]["type"] == "order.reminded" for d in letters)
        status, _, out = api.call("GET", "/v1/webhooks/dead-letters")
        assert status == 200 and sorted(d["id"] for d in out["dead_letters"]) == sorted(d["id"] for d in letters)
        status, _, out = api.call("GET", "/v1/webhooks")
        assert out["endpoints"] == [{"name": "crm", "url": receiver.url, "events": ["order.reminded"], "waiting": 0, "dead_letters": 2}]
        # bad requests: one line / a 422 naming the field, nothing replayed
        assert cli(cfg, "webhooks", "retry").returncode == 2
        nope = cli(cfg, "webhooks", "retry", "a0-1-0")
        assert nope.returncode == 1 and "no dead letter a0-1-0" in nope.stderr
        assert api.call("POST", "/v1/webhooks/dead-letters/replay", {})[0] == 422
        status, _, bad = api.call("POST", "/v1/webhooks/dead-letters/replay", {"all": True, "endpoint": "erp"})
        assert status == 422 and bad["detail"][0]["loc"] == ["body", "endpoint"]
        assert api.call("POST", "/v1/webhooks/dead-letters/replay", {"all": True}, token="ro-secret-00001")[0] == 403
        assert jobs.counts("crm") == (0, 2)
        failing["on"] = False
        first, second = letters[0]["id"], letters[1]["id"]
        again = cli(cfg, "webhooks", "retry", first)
        assert again.returncode == 0 and again.stdout.startswith("1 dead letter(s) queued again"), again.stdout
        receiver.wait(lambda rs: any(r.event["id"] == first and r.headers["X-Smsbot-Attempt"] == "1" for r in rs))
        status, _, out = api.call("POST", "/v1/webhooks/dead-letters/replay", {"ids": [second, "a0-1-0"]})
        assert status == 200 and out == {"replayed": [{"endpoint": "crm", "id": second}], "missing": ["a0-1-0"]}
        receiver.wait(lambda rs: any(r.event["id"] == second and r.headers["X-Smsbot-Attempt"] == "1" for r in rs))
        assert wait_until(lambda: jobs.counts("crm") == (0, 0), 5)
        assert "no dead letters" in cli(cfg, "webhooks", "list").stdout
    finally:
        api.stop()
        receiver.close()


def test_slow_receiver_does_not_slow_the_sms_path(make_world: Callable[..., World], receiver: Receiver) -> None:
    """The receiver holds every request unanswered; meanwhile each MO is answered at once (the
    webhook senders wait on their own threads and connections)."""
    w = make_world(**{"webhooks": [endpoint(receiver.url, ["*"], timeout_seconds=20, concurrency=1)],
                      "smsc.registered_delivery": 1})
    receiver.release.clear()
    w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")
    phone = w.handset(MSISDN)
    assert "视频会员包月" in phone.ask("0000")
    receiver.wait(lambda rs: len(rs) >= 1)  # a receipt's POST is now held by the receiver
    slowest = 0.0
    for text in ("0000", "CXZD", "0000", "帮助", "0000"):
        started = time.monotonic()
        assert phone.ask(text)
        slowest = max(slowest, time.monotonic() - started)
    assert len(receiver.requests) == 1, "the one sender is still held by the receiver"
    assert slowest < 2.0, f"an MO waited {slowest:.2f} s for its reply while the webhook receiver hung"
    assert w.bot.webhooks.jobs.counts("crm")[0] >= 5, "the receipts wait as jobs"
    receiver.release.set()
    receiver.wait(lambda rs: len({r.event["id"] for r in rs}) >= 6)


def test_two_instances_share_the_events(make_world: Callable[..., World], receiver: Receiver) -> None:
    """Two bots on one Redis: each event is collected by one of them (the consumer group) and
    delivered once."""
    w = make_world(**{"webhooks": [endpoint(receiver.url, ["order.reminded"])]})
    second = w.start_bot()
    orders = _order_events(w, 30, "TWO")
    got = receiver.wait(lambda rs: len(rs) >= 30)
    assert sorted(r.event["data"]["order_id"] for r in got) == sorted(orders)
    def collected() -> list[float]:
        return [b.metrics.registry.get_sample_value("smsbot_webhook_events_total", {"type": "order.reminded"}) or 0
                for b in (w.bot, second)]

    # the collector counts an event after it has queued the job and woken the senders, so the
    # receiver may hold all 30 a moment before the counters say so
    assert wait_until(lambda: sum(collected()) == 30, 5), collected()
    assert wait_until(lambda: w.bot.webhooks.jobs.counts("crm") == (0, 0), 5)
    assert len(receiver.requests) == 30, "none twice"
