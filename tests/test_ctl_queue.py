"""A suspended instance and the shared queue (`smsbot.delivery`, runtime control): real ``smsbot run``
processes bound to the simulator on the test session's Redis, suspended and resumed with the real
CLI and over real HTTP, notices queued through the HTTP API. Who sent what is read from the
simulator's submit log (each notice goes to a number of its own; each bind is a connection id)."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import redis
import yaml

from smsbot import control
from smsbot.config import SimulatorSettings
from smsbot.keys import OUTBOX_GROUP, Keys
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .conftest import base_config, cli
from .helpers import wait_until
from .running_bot import free_port, http_get, start_bot_process, stop_bot_process

ADMIN = {"Authorization": "Bearer queue-admin-0001"}


@dataclass
class Instance:
    name: str
    cfg: Path
    api: str
    log_path: Path

    def events(self, event: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                out.append(entry)
        return out


@dataclass
class Cluster:
    sim: SimSmsc
    raw: dict[str, Any]
    red: redis.Redis
    keys: Keys
    tmp_path: Path
    stack: ExitStack

    def start(self, label: str, **smsc: Any) -> Instance:
        """One more ``smsbot run`` process on the same Redis keys and simulator; returns once it is bound."""
        raw = copy.deepcopy(self.raw)
        raw["smsc"].update(smsc)
        raw["api"]["port"] = free_port()
        cfg = self.tmp_path / f"config-{label}.yaml"
        cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        log_path = self.tmp_path / f"bot-{label}.log"
        before = set(control.instances(self.red, self.keys))
        binds = len(self.sim.binds())
        proc = start_bot_process(cfg, log_path)
        self.stack.callback(stop_bot_process, proc)
        api = f"http://127.0.0.1:{raw['api']['port']}"
        assert wait_until(lambda: len(self.sim.binds()) > binds and set(control.instances(self.red, self.keys)) - before
                          and http_get(api + "/status")[0] == 200, 30), log_path.read_text()
        [name] = set(control.instances(self.red, self.keys)) - before
        return Instance(name, cfg, api, log_path)

    def conns(self) -> set[int]:
        return {b["id"] for b in self.sim.binds()}

    def notice(self, via: Instance, msisdn: str) -> None:
        req = urllib.request.Request(via.api + "/v1/notices", json.dumps({"msisdn": msisdn, "text": f"notice {msisdn}"}).encode(),
                                     {**ADMIN, "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 202

    def submits(self, numbers: list[str]) -> list[dict[str, Any]]:
        """The simulator's accepted submits to these numbers."""
        wanted = set(numbers)
        return [s for s in self.sim.submit_log() if s["to"] in wanted and s["status"] == 0]

    def delivered_once(self, numbers: list[str]) -> bool:
        sent = Counter(s["to"] for s in self.submits(numbers))
        assert all(n == 1 for n in sent.values()), f"sent twice: {[to for to, n in sent.items() if n > 1]}"
        return set(sent) == set(numbers)

    def queue_unread_and_unclaimed(self) -> tuple[int, int]:
        """Entries in the queue streams, and how many of them some consumer has read but not acknowledged."""
        total = pending = 0
        for stream in self.keys.all_queues():
            total += self.red.xlen(stream)
            if self.red.exists(stream):
                pending += self.red.xpending(stream, OUTBOX_GROUP)["pending"]
        return total, pending

    def heartbeat_at(self, instance: Instance) -> int:
        raw = self.red.get(self.keys.heartbeat(instance.name))
        return json.loads(raw)["at"] if raw else 0


@contextmanager
def cluster(redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    sim = SimSmsc(SimulatorSettings(redeliver_seconds=0.3), smpp_port=0, control_port=0).start()
    raw = base_config(redis_url, tmp_path / "var")
    raw["smsc"].update({"port": sim.smpp_port, "drain_timeout": 1})
    raw["log"].update({"level": "INFO", "format": "json"})
    raw["api"].update({"tokens": ["ops:queue-admin-0001:*"]})
    red = redis.Redis.from_url(redis_url)
    with ExitStack() as stack:
        stack.callback(sim.stop)
        stack.callback(red.close)
        yield Cluster(sim, raw, red, Keys(raw["redis"]["key_prefix"], raw["redis"].get("shards", 16)), tmp_path, stack)


def numbers(first: int, count: int) -> list[str]:
    return [f"139{first + i:08d}" for i in range(count)]


def test_a_suspended_instance_hands_its_queue_share_to_a_sibling(redis_server: Any, tmp_path: Path) -> None:
    with cluster(redis_server.url, tmp_path) as c:
        # a: one submit a second, so the notices it reads wait in its backlog
        a = c.start("a", max_tps=1)
        taken = numbers(0, 30)
        for n in taken:
            c.notice(a, n)
        assert wait_until(lambda: c.submits(taken), 10)  # a has read them and is sending
        # MOs answered by a: their replies (a's own outbox entries) wait behind the notices
        answered = numbers(50, 6)
        for n in answered:
            Handset(c.sim.control_url, n).send("10086", "0000")
        assert wait_until(lambda: sum(c.red.xlen(o) for o in c.keys.all_outboxes()) == len(answered), 10)
        b = c.start("b")
        a_conn = c.submits(taken)[0]["conn"]
        b_conn = (c.conns() - {a_conn}).pop()

        done = cli(a.cfg, "ctl", "suspend", a.name)
        assert done.returncode == 0 and "(0 parts left to send after resume)" in done.stdout, done.stdout + done.stderr
        assert c.conns() == {b_conn}
        # what a had read but not sent goes out through b, each once, within seconds
        assert wait_until(lambda: c.delivered_once(taken), 10), Counter(s["conn"] for s in c.submits(taken))
        [handed] = a.events("suspended_handed_back")
        assert handed["entries"] >= 10 and handed["old_consumer"] == a.name, handed  # a's unsent share
        # its replies to MOs it answered: adopted by b (once they are delivery.orphan_age_seconds old), once
        assert wait_until(lambda: c.delivered_once(answered), 15), Counter(s["conn"] for s in c.submits(answered))
        assert {s["conn"] for s in c.submits(answered)} == {b_conn}
        assert len([s for s in c.submits(taken + answered) if s["conn"] == b_conn]) >= handed["entries"]

        # new notices while a is suspended: b sends them all, a reads none
        later = numbers(100, 10)
        for n in later:
            c.notice(b, n)
        assert wait_until(lambda: c.delivered_once(later), 10)
        assert {s["conn"] for s in c.submits(later)} == {b_conn}

        code, body = _control(b, {"instance": a.name, "action": "resume"})
        assert code == 200 and body["results"][0]["detail"] == "resumed: bound", body
        a_again = (c.conns() - {b_conn}).pop()
        # a reads the queue again: with b suspended in turn, a sends what is queued
        code, body = _control(a, {"instance": b.name, "action": "suspend"})
        assert code == 200 and body["results"][0]["ok"], body
        assert c.conns() == {a_again}
        after_resume = numbers(200, 5)
        for n in after_resume:
            c.notice(a, n)
        assert wait_until(lambda: c.delivered_once(after_resume), 15)
        assert {s["conn"] for s in c.submits(after_resume)} == {a_again}
        assert _control(a, {"instance": b.name, "action": "resume"})[0] == 200
        assert c.delivered_once(taken + answered + later + after_resume)
        # every entry sent was recorded (XACK + XDEL)
        assert wait_until(lambda: c.queue_unread_and_unclaimed() == (0, 0), 10), c.queue_unread_and_unclaimed()


def test_a_single_suspended_instance_keeps_the_queue_in_redis_until_it_resumes(redis_server: Any, tmp_path: Path) -> None:
    with cluster(redis_server.url, tmp_path) as c:
        a = c.start("a")
        code, body = _control(a, {"instance": "all", "action": "suspend"})
        assert code == 200 and body["results"][0]["state"]["suspended"] is True, body
        queued = numbers(300, 5)
        for n in queued:
            c.notice(a, n)
        # the worker turns (two more heartbeats: many queue polls) and reads nothing
        beat = c.heartbeat_at(a)
        assert wait_until(lambda: c.heartbeat_at(a) >= beat + 2, 15)
        assert c.queue_unread_and_unclaimed() == (5, 0)
        assert c.submits(queued) == [] and c.sim.binds() == []

        code, body = _control(a, {"instance": a.name, "action": "resume"})
        assert code == 200 and body["results"][0]["detail"] == "resumed: bound", body
        assert wait_until(lambda: c.delivered_once(queued), 10)
        assert wait_until(lambda: c.queue_unread_and_unclaimed() == (0, 0), 10)


def _control(via: Instance, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(via.api + "/v1/control", json.dumps(body).encode(),
                                 {**ADMIN, "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, json.loads(r.read())
