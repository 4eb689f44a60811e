"""Webhooks survive a bot killed with -9: `smsbot run` as a process, the receiver holding a request
when the bot dies; after a restart every event arrives, at least once, and a copy carries the same
idempotency key and the same signed body."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from smsbot import config
from .helpers import wait_until
from commands.orders.events import write_order
from smsbot.keys import Keys
from smsbot.simulator.smsc import SimSmsc
from tests.config_files import make_raw, write_cfg
from tests.webhook_receiver import Receiver, endpoint


def test_kill_9_then_restart_delivers_every_event(redis_server, tmp_path: Path) -> None:
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    receiver = Receiver()
    receiver.release.clear()  # the first request is held unanswered until the bot is dead
    procs: list[subprocess.Popen] = []
    client = redis.Redis.from_url(redis_server.url)
    try:
        raw = make_raw(redis_server.url, tmp_path, sim)
        raw["webhooks"] = [endpoint(receiver.url, ["order.reminded"], timeout_seconds=1, concurrency=1, max_attempts=50)]
        cfg = write_cfg(tmp_path / "config.yaml", raw)
        settings = config.from_dict(raw)
        keys = Keys(settings.redis.key_prefix, settings.redis.shards)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}

        def start() -> subprocess.Popen:
            p = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            procs.append(p)
            return p

        first = start()
        assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
        orders = [f"ORD-K9-{i}" for i in range(10)]
        for i, oid in enumerate(orders):
            write_order(settings, client, f"1390000{i:04d}", "VIDEO", int(time.time() * 1000), oid)
        # every event is a stored job (none can be delivered while the receiver holds its requests), and
        # one POST is in flight when the bot dies
        assert wait_until(lambda: client.hlen(keys.webhook_jobs("crm")) == 10, 20)
        held = receiver.wait(lambda rs: len(rs) >= 1)[0]
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        receiver.release.set()
        start()
        # the held POST was never answered to the bot: its job's lease runs out and the new bot sends it again
        got = receiver.wait(lambda rs: {r.event["data"]["order_id"] for r in rs} >= set(orders)
                            and sum(r.event["id"] == held.event["id"] for r in rs) >= 2, timeout=40)
        by_key: dict[str, list] = {}
        for r in got:
            assert r.headers["Idempotency-Key"] == r.event["id"]
            by_key.setdefault(r.event["id"], []).append(r)
        assert len(by_key) == 10, "ten events, each with its own idempotency key"
        copies = by_key[held.event["id"]]
        assert all(c.body == held.body and c.headers["X-Smsbot-Signature"] == held.headers["X-Smsbot-Signature"] for c in copies)
        assert int(copies[-1].headers["X-Smsbot-Attempt"]) >= 2
        assert wait_until(lambda: client.hlen(keys.webhook_jobs("crm")) == 0, 10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        receiver.close()
        sim.stop()
        client.close()
