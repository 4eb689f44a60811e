"""Crash safety end to end: a Redis reply lost after Redis applied a batch, and a bot killed with -9.

Real parts only: the simulator over SMPP, the bundled redis-server, `smsbot run` as a process; the
lost reply is made by a TCP proxy between the bot and Redis that cuts the connection after Redis
answered an MO's script, before the bot can read the answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .helpers import wait_until
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc
from tests.conftest import Phone
from tests.config_files import make_raw, write_cfg
from tests.redis_proxy import CuttingProxy

MSISDN = "13800138000"


def test_reply_stranded_by_a_lost_redis_answer_is_sent_once(make_world, redis_server, make_settings):
    """Before: Redis applied the MO, the bot never read the answer, the MO got "try again", its
    redelivery was a "duplicate" with nothing to send, and the reply waited in the outbox under a
    live owner until that process restarted. Now the redelivery hands the stranded reply back."""
    proxy = CuttingProxy(str(redis_server.socket))
    try:
        w = make_world(**{"redis.url": f"redis://127.0.0.1:{proxy.port}"})
        w.subscribe(MSISDN, "VIDEO", "MUSIC")
        phone = w.handset(MSISDN)
        assert "视频会员包月" in phone.ask("0000")
        proxy.arm(MSISDN.encode())
        mo = phone.send("2")
        reply = phone.expect(1, timeout=15)
        reply += phone.quiet()
        assert proxy.cuts == 1, "the proxy cut the connection after Redis answered"
        assert len(reply) == 1 and "您已成功退订彩铃音乐包" in reply[0]["text"], reply
        st = w.sim.wait_mo(mo, timeout=10)
        assert st["state"] == "delivered" and len(st["history"]) >= 2, st  # a temporary error, then taken
        cancels = [1 for _id, f in w.bot.store.redis.xrange(w.bot.store.keys.subscriber(MSISDN).audit)
                   if f[b"msisdn"].decode() == MSISDN and f[b"new"] == b"cancelled"]
        assert len(cancels) == 1
    finally:
        proxy.close()


def test_kill_9_resends_at_most_one_window(redis_server, tmp_path: Path):
    """100 subscribers' replies flow with a submit window of 3; the bot is killed -9 mid-way and
    started again. Every subscriber gets its reply; what the SMSC accepted twice is at most one
    window (before: every reply accepted in the last 50-250 ms, whose acknowledgements waited in
    memory, went out again)."""
    sim = SimSmsc(smpp_port=0, control_port=0).start()
    procs: list[subprocess.Popen] = []
    try:
        raw = make_raw(redis_server.url, tmp_path, sim)
        raw["smsc"].update({"window": 3})
        raw["delivery"] = {"orphan_age_seconds": 0, "adopt_every_seconds": 0.5, "lease_seconds": 1.5, "heartbeat_seconds": 0.5}
        cfg = write_cfg(tmp_path / "config.yaml", raw)
        phones = [Phone(Handset(sim.control_url, f"1390000{i:04d}")) for i in range(100)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}

        def start() -> subprocess.Popen:
            p = subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            procs.append(p)
            return p

        first = start()
        assert wait_until(lambda: sim.stats()["binds"] == 1, 15)
        for p in phones:
            p.send("0000")
        assert wait_until(lambda: len(sim.submit_log()) >= 30, 20)
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        start()
        got = {p.msisdn: p.expect(1, timeout=30) for p in phones}
        assert all(len(msgs) >= 1 for msgs in got.values())
        accepted: dict[str, int] = {}
        for e in sim.submit_log():
            if e["status"] == 0:
                accepted[e["to"]] = accepted.get(e["to"], 0) + 1
        twice = sum(n - 1 for n in accepted.values() if n > 1)
        assert twice <= 3, f"{twice} replies accepted twice after one kill -9 (window 3): {accepted}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        sim.stop()
