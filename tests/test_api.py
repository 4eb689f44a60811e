"""The HTTP API (smsbot.api, issue 12) end to end: a real uvicorn on a free loopback port, real Redis,
the simulated SMSC and a bound bot. An order posted to the API reaches the handset as a charge
reminder (once, also when posted twice); a cancel by customer care shows in the next 0000 menu and
in the audit with the token's name; a notice arrives; auth (401/403), the rate limit (429), 422
naming each wrong field, the body limit (413), Redis down (503 with Retry-After), status.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Iterator

import pytest

from commands.usage import usage_settings

from .helpers import wait_until

from .api_client import CARE, OPS, RO, TOKENS, Api, ApiProcess, start_api
from .conftest import World

MSISDN = "13800138000"


@pytest.fixture
def api(world: World) -> Iterator[Api]:
    a = start_api(world.settings)
    yield a
    a.stop()


def test_order_reaches_handset_as_reminder_once(world: World, api: Api) -> None:
    phone = world.handset(MSISDN)
    body = {"msisdn": "+86 138-0013-8000", "service": "video", "order_id": "ORD-API-1"}
    status, _, first = api.call("POST", "/v1/orders", body)
    assert status == 202, first
    assert first["msisdn"] == MSISDN and first["service"] == "VIDEO" and first["event_id"] and not first["duplicate"]
    status, _, again = api.call("POST", "/v1/orders", body)
    assert status == 200 and again["event_id"] == first["event_id"] and again["duplicate"]
    msgs = phone.expect(1)
    assert "扣费提醒" in msgs[0]["text"] and "视频会员包月" in msgs[0]["text"]
    assert phone.quiet() == []  # the reminder once
    assert world.bot.store.redis.xlen(world.bot.store.keys.order_events()) == 1
    # served by uvicorn's C parser (httptools; with uvloop, dependencies of smsbot): h11 costs a
    # quarter more CPU per request (bench/api_load.py)
    assert api.server.config.http_protocol_class.__name__ == "HttpToolsProtocol"


def test_cancel_via_api_shows_in_next_menu_and_audit(world: World, api: Api) -> None:
    world.subscribe(MSISDN, "VIDEO", "NEWS")
    phone = world.handset(MSISDN)
    status, _, subs = api.call("GET", f"/v1/subscribers/{MSISDN}/subscriptions", token=RO)
    assert status == 200 and {s["service"] for s in subs["subscriptions"]} == {"VIDEO", "NEWS"}
    status, _, _ = api.call("DELETE", f"/v1/subscribers/{MSISDN}/subscriptions/VIDEO", token=RO)
    assert status == 403
    status, _, out = api.call("DELETE", "/v1/subscribers/8613800138000/subscriptions/video", token=CARE)
    assert status == 200 and out == {"msisdn": MSISDN, "service": "VIDEO", "outcome": "removed", "by": "api:care"}
    status, _, out = api.call("DELETE", f"/v1/subscribers/{MSISDN}/subscriptions/VIDEO", token=CARE)
    assert status == 404
    menu = phone.ask("0000")
    assert "手机早晚报" in menu and "视频会员包月" not in menu
    st = world.bot.store
    audit = st.redis.xrange(st.keys.subscriber(MSISDN).audit)
    assert any(b"api:care" in b"".join(v for v in fields.values()) for _, fields in audit)


def test_notice_arrives(world: World, api: Api) -> None:
    phone = world.handset(MSISDN)
    status, _, out = api.call("POST", "/v1/notices", {"msisdn": "+8613800138000", "text": "尊敬的客户，系统将于今晚维护 {不是模板}。"},
                              token=OPS)
    assert status == 202 and out["short_code"] == "10086" and out["id"], out
    msgs = phone.expect(1)
    assert msgs[0]["text"] == "尊敬的客户，系统将于今晚维护 {不是模板}。"
    assert out["href"] == f"/v1/subscribers/{MSISDN}/notices/{out['id']}"
    deadline = time.monotonic() + 5
    while (state := api.call("GET", out["href"], token=RO))[2]["state"] != "sent":
        assert state[0] == 200 and state[2]["state"] == "queued" and time.monotonic() < deadline, state
        time.sleep(0.05)
    assert api.call("GET", f"/v1/subscribers/{MSISDN}/notices/garbage", token=RO)[0] == 422
    # sent, it is still this subscriber's alone: another number, an id never given, are 404 (issue 19 item 3)
    assert api.call("GET", f"/v1/subscribers/13800138001/notices/{out['id']}", token=RO)[0] == 404
    assert api.call("GET", f"/v1/subscribers/{MSISDN}/notices/1-0", token=RO)[0] == 404
    status, _, bad = api.call("POST", "/v1/notices", {"msisdn": MSISDN, "template": "no_such_template"})
    assert status == 422 and bad["detail"][0]["loc"] == ["body", "template"]


def test_uses_usage_ledger_and_status(world: World, api: Api) -> None:
    status, _, out = api.call("POST", "/v1/uses", {"msisdn": MSISDN, "service": "RING", "use_id": "U-1"})
    assert status == 202 and out["id"] == "U-1"
    assert api.call("POST", "/v1/uses", {"msisdn": MSISDN, "service": "RING", "use_id": "U-1"})[0] == 200
    status, _, out = api.call("POST", "/v1/usage", {"msisdn": MSISDN, "used": "1015MB", "plan": "4G_1GB"})
    assert status == 202 and out["used"] == 1015 * 1024 * 1024, out
    phone = world.handset(MSISDN)
    assert "剩余流量9.0MB" in phone.expect(1)[0]["text"]  # the 10 MB alert
    assert wait_until(lambda: api.call("GET", f"/v1/subscribers/{MSISDN}/usage", token=RO)[0] == 200, 5)
    status, _, state = api.call("GET", f"/v1/subscribers/{MSISDN}/usage", token=RO)
    # issue 19 item 9: the read side is a model of numbers and lists, no internal keys
    mb = 1024 * 1024
    assert state == {"msisdn": MSISDN, "cycle": out["cycle"], "current": True, "plan": "4G_1GB", "used": 1015 * mb,
                     "quota": 1024 * mb, "left": 9 * mb, "thresholds": [10 * mb, 5 * mb, 0], "alerted": [10 * mb],
                     "overage_fen_per_mb": state["overage_fen_per_mb"], "at": state["at"], "event_id": out["event_id"]}, state
    plan = next(p for p in usage_settings(world.settings).plans if p.code == "4G_1GB")
    assert state["overage_fen_per_mb"] == plan.overage_fen_per_mb and abs(state["at"] - time.time() * 1000) < 60_000
    status, _, none = api.call("GET", "/v1/subscribers/13900000000/usage", token=RO)
    assert status == 404 and none == {"detail": "no usage reported for 13900000000"}
    status, _, ledger = api.call("GET", f"/v1/subscribers/{MSISDN}/ledger", token=RO)
    assert status == 200 and ledger["total_fen"] == 0
    smsc = f"127.0.0.1:{world.sim.smpp_port}/{world.settings.smsc.system_id} transceiver"

    def me() -> dict:  # the bot's heartbeat (every delivery.heartbeat_seconds) says how it is bound
        status, _, st = api.call("GET", "/v1/status", token=RO)
        assert status == 200 and st["redis"] == "ok"
        (mine,) = [i for i in st["instances"] if i["instance"] == world.bot.instance]
        return mine

    assert wait_until(lambda: me()["binds"] == [smsc], 5), me()
    assert me()["bound"] and me()["consumer"] == world.bot.transport.delivery.consumer
    status, _, st = api.call("GET", "/v1/status", token=RO)
    assert "outbox_oldest_age_s" in st
    status, _, page = api.call("GET", "/status", token=None)
    assert status == 200 and "smsbot status" in page and world.bot.instance in page and smsc in page
    status, _, _ = api.call("GET", "/v1/mt/nonexistent", token=RO)
    assert status == 404


def test_auth_401_403(world: World, api: Api) -> None:
    order = {"msisdn": MSISDN, "service": "VIDEO"}
    status, headers, out = api.call("POST", "/v1/orders", order, token=None)
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert api.call("POST", "/v1/orders", order, token="wrong-token-123")[0] == 401
    status, _, out = api.call("POST", "/v1/orders", order, token=RO)
    assert status == 403 and "events" in out["detail"]
    assert api.call("GET", "/v1/status", token=None)[0] == 401
    assert world.bot.store.redis.xlen(world.bot.store.keys.order_events()) == 0


def test_422_names_each_field_and_writes_nothing(world: World, api: Api) -> None:
    status, _, out = api.call("POST", "/v1/orders", {"msisdn": "12ab", "service": "NOPE", "at": "yesterday"})
    assert status == 422
    assert {tuple(e["loc"]) for e in out["detail"]} == {("body", "msisdn"), ("body", "service"), ("body", "at")}
    assert "NOPE" in next(e["msg"] for e in out["detail"] if e["loc"][1] == "service")
    status, _, out = api.call("POST", "/v1/orders", {"service": "VIDEO"})
    assert status == 422 and out["detail"][0]["loc"] == ["body", "msisdn"]
    status, _, out = api.call("POST", "/v1/usage", {"msisdn": MSISDN, "used": "lots", "cycle": "2026-13", "plan": "XX"})
    assert status == 422 and {e["loc"][1] for e in out["detail"]} == {"used", "cycle", "plan"}
    status, _, out = api.call("POST", "/v1/uses", {"msisdn": MSISDN, "service": "VIDEO"})
    assert status == 422 and out["detail"][0]["loc"] == ["body", "service"]
    assert api.call("GET", "/v1/subscribers/abc/subscriptions", token=RO)[0] == 422
    status, _, out = api.call("POST", "/v1/orders", raw=b"x" * 20000)
    assert status == 413
    keys = world.bot.store.keys
    r = world.bot.store.redis
    assert r.xlen(keys.order_events()) == 0 and r.xlen(keys.use_events()) == 0 and r.xlen(keys.usage_events()) == 0


def test_rate_limit_429(world: World) -> None:
    api = start_api(world.settings, rate_per_second=0.5, burst=3)
    try:
        codes = [api.call("GET", "/v1/status", token=RO)[0] for _ in range(4)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        status, headers, _ = api.call("GET", "/v1/status", token=RO)
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert api.call("GET", "/v1/status", token=OPS)[0] == 200  # per token
    finally:
        api.stop()


def test_redis_down_503(world: World, make_settings: Any) -> None:
    s = world.settings
    api = start_api(s)
    try:
        # point the API's connection at a closed port: every request meets a Redis that is gone
        import redis as redis_mod

        ctx = api.server.config.app.state.ctx  # type: ignore[attr-defined]
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        ctx.store.redis = redis_mod.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry as AsyncRetry

        ctx.use_async_client(aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=AsyncRetry(NoBackoff(), 0)))
        status, headers, out = api.call("POST", "/v1/orders", {"msisdn": MSISDN, "service": "VIDEO", "order_id": "X"})
        assert status == 503 and headers["retry-after"] == "5", out
        for path, body in (("/v1/usage", {"msisdn": MSISDN, "used": 5}), ("/v1/notices", {"msisdn": MSISDN, "text": "hi"})):
            status, headers, out = api.call("POST", path, body)
            assert status == 503 and headers["retry-after"] == "5" and "nothing was written" in out["detail"], (path, out)
        assert api.call("GET", "/v1/status", token=RO)[0] == 503
    finally:
        api.stop()
    assert world.bot.store.redis.xlen(world.bot.store.keys.order_events()) == 0


def test_bot_starts_the_api_when_api_port_is_set(make_world: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    w = make_world(**{"api.port": port, "api.tokens": TOKENS})

    def instances() -> list[str]:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/status",
                                                               headers={"Authorization": f"Bearer {RO}"}), timeout=2) as r:
                return [i["instance"] for i in json.loads(r.read())["instances"]]
        except OSError:  # not listening yet
            return []

    # the API may answer before the bot's first heartbeat is written: the instance shows once it is
    assert wait_until(lambda: w.bot.instance in instances(), 10), ("smsbot run did not start the API", instances())


def test_smsbot_api_command_serves_the_same_redis(world: World, tmp_path: Any) -> None:
    """`smsbot --config CFG api --port P` as a real process: docs and schema served, tokens from
    SMSBOT_API_TOKENS, an order it takes reaches the handset; the token's secret is never printed."""
    from .conftest import write_config

    proc = ApiProcess(write_config(world, tmp_path), tmp_path / "api.log", env={"SMSBOT_API_TOKENS": f"ops:{OPS}:events+read"})
    try:
        doc = proc.send("GET", "/openapi.json", token=None)
        assert doc.status == 200 and "/v1/orders" in doc.json["paths"]
        assert proc.send("GET", "/docs", token=None).status == 200
        phone = world.handset(MSISDN)
        status, _, out = proc.call("POST", "/v1/orders", {"msisdn": MSISDN, "service": "NEWS"})
        assert status == 202, out
        assert "手机早晚报" in phone.expect(1)[0]["text"]
    finally:
        proc.stop()
    output = proc.log()
    assert "tokens: ops" in output and OPS not in output
    proc.assert_clean_log()
