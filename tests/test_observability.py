"""What a running bot exports for the dashboard and the alert rules (``contrib/``), end to end:
a bot bound to the simulator on real Redis, scraped over HTTP.

* traffic: MO/MT counts, the reply latency histogram (one observation per MO reply), window use,
  binds by kind, lease held, Redis up, queue depth and oldest age, receipts by state;
* the HTTP API's requests by route template (never the path, which may hold a number), in the
  bot's registry when ``smsbot run`` serves the API, on the API's own ``/metrics`` otherwise;
* Redis going away: ``smsbot_redis_up`` 0, failed round trips counted, the lease no longer held;
  Redis back empty (the lease gone with it): the lost lease counted, held again;
* queue lag read from real streams; a histogram observed while scraped loses nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import redis

from smsbot import config, embedded, queue_lag
from .helpers import wait_until

from .conftest import World, base_config

MSISDN = "13800138000"
TOKEN = "ops:observe-0001:*"
AUTH = {"Authorization": "Bearer observe-0001"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {}, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value}, labels as the exposition writes them."""
    code, body = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def start_world(settings: config.Settings) -> World:
    return World.started(settings)


@pytest.mark.parametrize("bind_mode", ["transceiver", "receiver+transmitter"])
def test_a_bot_under_traffic_exports_what_the_dashboard_needs(make_settings, bind_mode: str):
    metrics_port, api_port = free_port(), free_port()
    settings = make_settings(**{"metrics.port": metrics_port, "api.port": api_port, "api.tokens": [TOKEN],
                                "smsc.registered_delivery": 1, "smsc.bind_mode": bind_mode})
    w = start_world(settings)
    try:
        bot = w.bot
        w.sim.set_profile(receipt_outcomes={"13800138001": "UNDELIV:034"})
        w.subscribe(MSISDN, "VIDEO")
        w.subscribe("13800138001", "VIDEO")
        phone, undelivered = w.handset(MSISDN), w.handset("13800138001")
        for _ in range(3):
            phone.send("0000")
            parts = phone.expect(1)[0]["parts"]  # the menu's SMS parts: a receipt each
        undelivered.send("0000")
        assert undelivered.expect(1)[0]["parts"] == parts
        assert wait_until(lambda: bot.sender.idle, 5)
        assert get(f"http://127.0.0.1:{api_port}/v1/mt/{MSISDN}", AUTH)[0] == 404  # the API in the same process
        assert get(f"http://127.0.0.1:{api_port}/status")[0] == 200
        assert wait_until(lambda: scrape(metrics_port).get('smsbot_receipts_total{state="UNDELIV"}') == parts, 10)
        m = scrape(metrics_port)
        assert m['smsbot_mo_total{command="subscriptions",outcome="menu_sent"}'] == 4
        assert m['smsbot_mt_total{template="subscriptions.menu"}'] == 4
        assert m["smsbot_reply_seconds_count"] == 4  # one per MO reply
        assert m['smsbot_reply_seconds_bucket{le="+Inf"}'] == 4 and 0 < m["smsbot_reply_seconds_sum"] < 4 * 5
        assert m['smsbot_receipts_total{state="DELIVRD"}'] == 3 * parts
        assert m["smsbot_smsc_window"] == settings.smsc.window and m["smsbot_smsc_window_used"] == 0
        binds = {k: m[f'smsbot_smsc_binds{{kind="{k}"}}'] for k in ("transceiver", "receiver", "transmitter")}
        assert binds == ({"transceiver": 1, "receiver": 0, "transmitter": 0} if bind_mode == "transceiver"
                         else {"transceiver": 0, "receiver": 1, "transmitter": 1})
        assert m["smsbot_smsc_bound"] == 1 and m["smsbot_lease_held"] == 1 and m["smsbot_lease_lost_total"] == 0
        assert m["smsbot_redis_up"] == 1 and m["smsbot_redis_errors_total"] == 0
        assert m["smsbot_outbox_depth"] == 0 and m["smsbot_outbox_oldest_age_seconds"] == 0
        # the API's requests, by route template: the number in the path is nowhere
        assert m['smsbot_api_request_seconds_count{method="GET",route="/v1/mt/{message_id}",status="404"}'] == 1
        assert m['smsbot_api_request_seconds_count{method="GET",route="/status",status="200"}'] == 1
        assert m['smsbot_api_request_seconds_bucket{le="+Inf",method="GET",route="/status",status="200"}'] == 1
        assert not any(MSISDN in k for k in m)
    finally:
        w.stop()


def test_a_window_in_use_and_an_old_unsent_reply_show_while_the_smsc_holds_the_resps(make_settings):
    """submit_sm_resp delayed: the parts count against the window, and the reply's entry ages."""
    metrics_port = free_port()
    w = start_world(make_settings(**{"metrics.port": metrics_port}))
    try:
        w.subscribe(MSISDN, "VIDEO", "MUSIC", "NEWS")  # a menu of three services: two SMS parts
        w.sim.set_faults(resp_delay_ms=3000)
        w.handset(MSISDN).send("0000")
        assert wait_until(lambda: scrape(metrics_port)["smsbot_smsc_window_used"] == 2, 5)  # the menu's two parts
        assert wait_until(lambda: scrape(metrics_port)["smsbot_outbox_oldest_age_seconds"] >= 1.0, 5)
        m = scrape(metrics_port)
        assert m["smsbot_outbox_depth"] == 1 and m["smsbot_outbox_inflight"] == 2
        w.handset(MSISDN).expect(1, timeout=10)
        assert wait_until(lambda: scrape(metrics_port)["smsbot_outbox_depth"] == 0, 10)
        m = scrape(metrics_port)
        assert m["smsbot_smsc_window_used"] == 0 and m["smsbot_outbox_oldest_age_seconds"] == 0
        assert m["smsbot_reply_seconds_count"] == 1 and m['smsbot_reply_seconds_bucket{le="1.0"}'] == 0  # waited ~3 s
    finally:
        w.stop()


# -- Redis going away and coming back empty ------------------------------------------------------------
class RedisServer:
    """A redis-server of our own on a TCP port, no persistence: killed and started at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen([str(embedded.server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        assert wait_until(lambda: _pings(client), 10), "test redis-server did not start"
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _subscribed(w: World) -> bool:
    try:
        w.subscribe(MSISDN, "VIDEO")
        return True
    except redis.ConnectionError:
        return False


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.kill()


def test_redis_down_and_back_empty_shows_in_redis_up_errors_and_the_lease(own_redis: RedisServer, tmp_path: Path):
    metrics_port = free_port()
    raw = base_config(f"redis://127.0.0.1:{own_redis.port}/0", tmp_path / "var", **{
        "metrics.port": metrics_port, "delivery.heartbeat_seconds": 0.2, "delivery.lease_seconds": 0.8,
        "log.level": "ERROR"})
    w = start_world(config.from_dict(raw))
    try:
        w.subscribe(MSISDN, "VIDEO")
        phone = w.handset(MSISDN)
        assert "视频会员包月" in phone.ask("0000")
        m = scrape(metrics_port)
        assert m["smsbot_redis_up"] == 1 and m["smsbot_redis_errors_total"] == 0 and m["smsbot_lease_held"] == 1

        own_redis.kill()
        phone.send("0000")  # its batch's round trip fails: the bot asks the SMSC to deliver it again
        assert wait_until(lambda: scrape(metrics_port)["smsbot_redis_errors_total"] >= 1, 10)
        m = scrape(metrics_port)
        assert m["smsbot_redis_up"] == 0 and m["smsbot_lease_held"] == 0

        own_redis.start()  # empty: the lease went with the old server
        assert wait_until(lambda: _subscribed(w), 10)  # again (a connection kept from before fails once)
        assert wait_until(lambda: scrape(metrics_port)["smsbot_lease_lost_total"] == 1, 10)
        assert wait_until(lambda: scrape(metrics_port)["smsbot_lease_held"] == 1, 10)
        assert scrape(metrics_port)["smsbot_redis_up"] == 1
        assert any("视频会员包月" in m["text"] for m in phone.expect(1, timeout=15))  # the redelivered MO answered
    finally:
        w.stop()


# -- the API process on its own ------------------------------------------------------------------------
def test_the_api_on_its_own_serves_its_request_metrics(make_settings):
    from smsbot.api.app import start_in_thread

    s = make_settings(**{"api.tokens": [TOKEN], "api.max_body_bytes": 1024})
    server = start_in_thread(s, "127.0.0.1", 0)
    try:
        assert wait_until(lambda: server.started, 10)
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        assert get(f"{base}/v1/subscribers/{MSISDN}/subscriptions", AUTH)[0] == 200
        assert get(f"{base}/v1/subscribers/{MSISDN}/subscriptions")[0] == 401
        assert get(f"{base}/v1/orders", {**AUTH, "Content-Type": "application/json"}, b"x" * 2000)[0] == 413
        assert get(f"{base}/no/such/{MSISDN}")[0] == 404
        code, body = get(f"{base}/metrics")
        assert code == 200
        text = body.decode()
        route = "/v1/subscribers/{msisdn}/subscriptions"
        count = "smsbot_api_request_seconds_count"
        assert f'{count}{{method="GET",route="{route}",status="200"}} 1.0' in text
        assert f'{count}{{method="GET",route="{route}",status="401"}} 1.0' in text
        assert f'{count}{{method="POST",route="unmatched",status="413"}} 1.0' in text
        assert f'{count}{{method="GET",route="unmatched",status="404"}} 1.0' in text
        assert MSISDN not in text
        assert "/metrics" not in json.dumps(json.loads(get(f"{base}/openapi.json")[1])["paths"])
    finally:
        server.should_exit = True
        server.thread.join(10)


# -- pieces --------------------------------------------------------------------------------------------
def test_queue_lag_is_the_depth_and_the_age_of_the_oldest_unsent_entry(make_settings):
    from smsbot.connections import open_store

    store = open_store(make_settings())
    try:
        assert queue_lag.read(store) == queue_lag.QueueLag(0, None)
        now_ms = 1_900_000_000_000
        store.redis.xadd(store.keys.queue(0), {"to": MSISDN}, id=f"{now_ms - 30_000}-0")
        store.redis.xadd(store.keys.outbox(3), {"to": MSISDN}, id=f"{now_ms - 4_500}-0")
        store.redis.xadd(store.keys.outbox(3), {"to": MSISDN}, id=f"{now_ms - 1_000}-0")
        assert queue_lag.read(store, now=now_ms / 1000) == queue_lag.QueueLag(3, 30.0)
        store.redis.xdel(store.keys.queue(0), f"{now_ms - 30_000}-0")  # sent: the next oldest counts
        assert queue_lag.read(store, now=now_ms / 1000) == queue_lag.QueueLag(2, 4.5)
    finally:
        store.close()


def test_the_reply_histogram_loses_nothing_when_scraped_while_observing():
    from smsbot.metrics import Metrics

    m = Metrics()
    done = threading.Event()

    def observe() -> None:
        for i in range(100_000):
            m.reply_latency.observe(0.001 if i % 2 else 0.3)
        done.set()

    t = threading.Thread(target=observe)
    t.start()
    while not done.is_set():
        m.render()
    t.join()
    text = m.render().decode()
    assert "smsbot_reply_seconds_count 100000.0" in text
    assert 'smsbot_reply_seconds_bucket{le="0.005"} 50000.0' in text and 'smsbot_reply_seconds_bucket{le="0.25"} 50000.0' in text
    assert 'smsbot_reply_seconds_bucket{le="0.5"} 100000.0' in text
