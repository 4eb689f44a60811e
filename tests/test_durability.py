"""Durability modes (`redis.durability`, issue 22) with real redis-servers: a primary and a replica.

* `replica`: a round trip that wrote ends with `WAIT min_replicas timeout` in the same write; a
  replica that does not acknowledge in time makes the batch's MOs a temporary error (the SMSC
  redelivers them), and once it is back the redelivery is answered and applied once;
* `fsync`: the bundled server runs `appendfsync always`; an external server with another setting
  is a warning at start;
* the settings' mistakes are one line each (`smsbot config check`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import redis
import yaml

from smsbot import config, embedded, topology
from smsbot.roundtrip import ReplicasBehind

from .api_client import RO, start_api
from .conftest import World, base_config, cli
from .helpers import wait_until
from .redis_nodes import Nodes
from .state import subs_state
from bench.chaos.nodes import free_port as _free_port

MSISDN = "13800138077"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Nodes, int, int]]:
    nodes = Nodes(tmp_path / "nodes")
    try:
        primary = nodes.node(_free_port())
        replica = nodes.replica(primary)
        yield nodes, primary, replica
    finally:
        nodes.stop()


def _world(tmp_path: Path, url: str, **overrides) -> World:
    settings = config.from_dict(base_config(url, tmp_path / "var", **overrides))
    return World.started(settings)


def test_replica_durability_waits_in_the_same_round_trip_and_a_lagging_replica_is_a_temporary_error(pair, tmp_path):
    nodes, primary, replica = pair
    w = _world(tmp_path, f"redis://127.0.0.1:{primary}", **{"redis.durability": "replica", "redis.wait_timeout_ms": 200})
    try:
        store = w.bot.store
        rt = store.start_roundtrip([("SET", "ha:k", "1"), ("GET", "ha:k")])
        assert rt.wait_replicas == 1 and rt.wait() == [b"OK", b"1"]  # the WAIT's reply is not the caller's
        assert store.start_roundtrip([("GET", "ha:k")]).wait_replicas == 0  # reads wait for nobody
        w.subscribe(MSISDN, "VIDEO", "MUSIC")
        phone = w.handset(MSISDN)
        assert "1. 视频会员包月" in phone.ask("0000")

        nodes.pause(replica)  # the replica stops acknowledging: the cancel is written but not durable
        with pytest.raises(ReplicasBehind):
            store.start_roundtrip([("SET", "ha:k", "2")]).wait()
        mo = phone.send("1")
        assert wait_until(lambda: (w.sim.mo_status(mo) or {}).get("redeliveries", 0) >= 2, 10), w.sim.mo_status(mo)
        assert phone.h.collect(0) == []  # refused twice, not answered (an answer comes only with an acknowledgement)
        nodes.resume(replica)
        reply = phone.expect(1)[0]["text"]
        assert "您已成功退订视频会员包月" in reply  # the redelivery gets the cancel's own confirmation
        assert phone.quiet() == []
        assert subs_state(w, MSISDN) == {"VIDEO": "cancelled", "MUSIC": "active"}
        cancels = [e for _id, e in store.redis.xrange(store.keys.subscriber(MSISDN).audit) if e[b"new"] == b"cancelled"]
        assert len(cancels) == 1  # applied once
        assert redis.Redis(port=replica).hgetall(store.keys.subs(MSISDN))  # and it is on the replica

        api = start_api(w.settings)  # GET /v1/status shows the topology
        try:
            status, _, st = api.call("GET", "/v1/status", token=RO)
        finally:
            api.stop()
        assert status == 200, st
        topo = st["topology"]
        assert topo["mode"] == "single" and topo["durability"] == "replica" and topo["failovers_seen"] == 0
        (p,) = topo["primaries"]
        assert p["address"] == f"127.0.0.1:{primary}" and p["role"] == "master"
        assert [(r["address"], r["state"]) for r in p["replicas"]] == [(f"127.0.0.1:{replica}", "online")]
        assert all(isinstance(r["lag_bytes"], int) and isinstance(r["lag_s"], int) for r in p["replicas"])
    finally:
        w.stop()


def test_os_durability_sends_no_wait(pair, tmp_path):
    _nodes, primary, _replica = pair
    settings = config.from_dict(base_config(f"redis://127.0.0.1:{primary}", tmp_path / "var"))
    from smsbot import connections
    store = connections.store(settings)
    try:
        assert store.start_roundtrip([("SET", "ha:k", "1")]).wait_replicas == 0
    finally:
        store.close()


def _check(tmp_path: Path, **redis_keys) -> subprocess.CompletedProcess:
    raw = base_config("", tmp_path / "var")
    raw["redis"].update(redis_keys)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return cli(cfg, "config", "check")


@pytest.mark.parametrize("keys, says", [
    ({"durability": "replica"}, "the bundled server has none"),
    ({"durability": "disk"}, "redis.durability"),
    ({"durability": "replica", "url": "redis://127.0.0.1:6390", "min_replicas": 0}, "redis.min_replicas"),
])
def test_durability_mistakes_are_one_line_each(tmp_path, keys, says):
    raw = base_config("", tmp_path / "var")
    raw["redis"].update(keys)
    with pytest.raises(config.ConfigError) as refused:
        config.from_dict(raw)
    (line,) = refused.value.lines()
    assert line.startswith("redis.") and says in line, line


def test_config_check_names_a_durability_the_bundled_server_cannot_keep_in_one_line(tmp_path):
    done = _check(tmp_path, durability="fsync", appendfsync="everysec")
    assert done.returncode == 2, done.stdout + done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  redis.")]
    assert len(problems) == 1 and problems[0].startswith("  redis.durability (line "), done.stderr
    assert "fsync needs appendfsync always, not 'everysec'" in problems[0] and "Traceback" not in done.stderr


def test_fsync_durability_starts_the_bundled_server_with_appendfsync_always(tmp_path):
    raw = base_config("", tmp_path / "var")
    raw["redis"]["durability"] = "fsync"
    settings = config.from_dict(raw)
    from smsbot import connections
    store = connections.store(settings)
    try:
        assert store.redis.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        store.close()
        embedded.stop(settings.data_dir)


def _store(url: str, tmp_path: Path, **redis_keys):
    from smsbot import connections
    raw = base_config(url, tmp_path / "var")
    raw["redis"].update(redis_keys)
    return connections.store(config.from_dict(raw))


def test_an_external_server_that_does_not_keep_the_durability_asked_for_is_a_warning_at_start(pair, tmp_path):
    nodes, primary, replica = pair
    url = f"redis://127.0.0.1:{primary}"
    fsync, repl = _store(url, tmp_path, durability="fsync"), _store(url, tmp_path, durability="replica", min_replicas=1)
    try:
        assert [e for e, _f in topology.check(fsync)] == ["redis_durability_mismatch"]  # the server runs everysec
        fsync.redis.config_set("appendfsync", "always")
        assert topology.check(fsync) == []
        assert topology.check(repl) == []
        topo = topology.describe(repl)
        (p,) = topo["primaries"]
        assert p["address"] == f"127.0.0.1:{primary}" and p["role"] == "master" and not p["promoted"]
        assert [(r["address"], r["state"]) for r in p["replicas"]] == [(f"127.0.0.1:{replica}", "online")]
        nodes.kill9(replica)
        assert wait_until(lambda: topology.describe(repl)["primaries"][0]["replicas"] == [], 10)
        (event, fields), = topology.check(repl)
        assert event == "redis_replicas_missing" and fields["replicas"] == 0
    finally:
        fsync.close()
        repl.close()
