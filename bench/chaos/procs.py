"""The processes of one chaos scenario: the bundled Redis (through ``smsbot redis start``), the
``smsbot run`` bots and one-shot CLI commands, all driven only through the ``smsbot`` command line
with a config file of their own, and Redis.

Every child is started in a new session with PR_SET_PDEATHSIG (SIGKILL when the runner dies,
even by SIGKILL). The bundled redis-server daemonizes itself (it is not our child): its pid is
asked from Redis itself (``INFO server``) after every start, and `World.close` stops it with
``smsbot redis stop`` and then SIGKILLs every pid it ever had that is still a redis-server.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import yaml

from bench import sut
from bench.chaos.nodes import RedisNodes, free_port

REDIRECTIONS = ("ASK", "MOVED", "TRYAGAIN", "CLUSTERDOWN")  # the cluster's answers for a command sent to the wrong node or too soon

REPO = Path(__file__).resolve().parents[2]


def base_config_path() -> Path:
    """The config the bots' config is made from: ``CHAOS_BASE_CONFIG``, else the repo's config.yaml
    (give the config.yaml of the smsbot tree that ``CHAOS_SMSBOT_CMD`` runs, if it is another)."""
    return Path(os.environ.get("CHAOS_BASE_CONFIG") or REPO / "config.yaml")


class ScenarioError(RuntimeError):
    """Something the scenario needs could not be started; the message says what to look at."""


def _child_setup() -> None:  # pragma: no cover - runs between fork and exec
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def _watchdog_setup() -> None:  # pragma: no cover - runs between fork and exec
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


# Started per World: when the runner dies (even by SIGKILL) it gets SIGTERM and kills the bundled
# redis-server(s) of the work dir, which daemonize and so outlive the runner otherwise. A pid is only
# killed while it is a redis-server whose working directory is inside the work dir.
_WATCHDOG = r"""
import os, shutil, signal, sys
workdir, keep = os.path.realpath(sys.argv[1]), sys.argv[2] == "1"
def pids():
    out = set()
    for path in (os.path.join(workdir, "chaos-redis-pids"), os.path.join(workdir, "redis", "redis.pid")):
        try:
            out |= {int(x) for x in open(path).read().split()}
        except (OSError, ValueError):
            pass
    return out
def ours(pid):
    try:
        return (b"redis-server" in open("/proc/%d/cmdline" % pid, "rb").read()
                and os.path.realpath("/proc/%d/cwd" % pid).startswith(workdir))
    except OSError:
        return False
def clean(*_):
    for pid in pids():
        if ours(pid):
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    os._exit(0)
signal.signal(signal.SIGTERM, clean)
signal.signal(signal.SIGHUP, clean)
while True:
    signal.pause()
"""


def smsbot_command() -> list[str]:
    """How to run the `smsbot` CLI: ``CHAOS_SMSBOT_CMD`` (shell words) overrides, else as the
    benchmark runs it (`bench.sut.smsbot_command`)."""
    override = os.environ.get("CHAOS_SMSBOT_CMD")
    if override:
        return shlex.split(override)
    return sut.smsbot_command()


def _tail(path: Path, limit: int = 1200) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""


def _is_redis(pid: int, workdir: Path) -> bool:
    """`pid` is a redis-server working in `workdir` (the bundled server chdirs to its data dir):
    never signal a recycled pid or another test's server."""
    try:
        return (b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
                and os.path.realpath(f"/proc/{pid}/cwd").startswith(os.path.realpath(workdir)))
    except OSError:
        return False


class Bot:
    """One `smsbot run` process slot; `gen` counts its (re)starts."""

    def __init__(self, world: "World", index: int):
        self.world, self.index = world, index
        self.proc: subprocess.Popen | None = None
        self.gen = 0
        self.planned_exit = False
        self.logs: list[Path] = []

    def start(self) -> None:
        self.gen += 1
        log = self.world.workdir / f"bot{self.index}-{self.gen}.log"
        self.logs.append(log)
        with open(log, "wb") as f:
            # each bot binds with a system_type of its own: the chaos SMSC tells them apart by it
            env = {**self.world.env, "SMSBOT_SMSC_SYSTEM_TYPE": self.name}
            self.proc = subprocess.Popen(self.world.base + ["run"], cwd=str(self.world.workdir), env=env,
                                         stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         preexec_fn=_child_setup)
        self.planned_exit = False

    @property
    def name(self) -> str:
        return f"bot{self.index}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.planned_exit = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.planned_exit = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_tail(self) -> str:
        return _tail(self.logs[-1]) if self.logs else ""


class World:
    """A temp work dir, its config file, its Redis, its bots."""

    def __init__(self, smsc_port: int, *, window: int = 10, bot_env: dict[str, str] | None = None,
                 keep: bool = False, overrides: dict[str, Any] | None = None, topology: str = "bundled"):
        self.workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
        self.keep = keep
        self.topology = topology
        self.nodes: RedisNodes | None = None
        self.primaries: list[int] = []  # sentinel: the first primary; cluster: the primaries' ports
        self.sentinels: list[int] = []
        self.cluster_ports: list[int] = []
        redis_overrides = self._start_nodes(topology) if topology != "bundled" else {}
        self.config = self._write_config(smsc_port, window, {**redis_overrides, **(overrides or {})})
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMSBOT_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(bot_env or {})
        self.env = env
        self.base = smsbot_command() + ["--config", str(self.config_path)]
        self.bots: list[Bot] = []
        self.redis_url: str | None = None
        self.redis_pids: set[int] = set()
        self._client: Any = None
        self.watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(self.workdir), "1" if keep else "0"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_watchdog_setup)

    # -- Redis nodes of our own (issue 22) ----------------------------------------------------------
    def _start_nodes(self, topology: str) -> dict[str, Any]:
        """Sentinel: a primary, two replicas, three sentinels; cluster: three primaries with a
        replica each. Every node with its AOF (appendfsync everysec). Returns the redis settings."""
        self.nodes = RedisNodes(self.workdir / "nodes", preexec_fn=_child_setup)
        try:
            if topology == "sentinel":
                primary = self.nodes.node(free_port(), aof=True)
                self.nodes.replica(primary, aof=True)
                self.nodes.replica(primary, aof=True)
                self.primaries = [primary]
                self.sentinels = self.nodes.sentinels(primary)
                return {"redis.mode": "sentinel", "redis.url": None,
                        "redis.sentinels": [f"127.0.0.1:{p}" for p in self.sentinels]}
            if topology == "cluster":
                self.cluster_ports = self.nodes.cluster(3, replicas=1, aof=True)
                self.primaries = self.cluster_ports[:3]
                return {"redis.mode": "cluster", "redis.url": f"redis://127.0.0.1:{self.primaries[0]}"}
        except RuntimeError as e:
            self.nodes.stop()
            raise ScenarioError(str(e)) from None
        raise ScenarioError(f"unknown Redis topology {topology!r}: bundled, sentinel or cluster")

    def client(self) -> Any:
        """A client of the data as the bots see it: the bundled server, the sentinels' primary, the cluster."""
        import redis
        import redis.cluster
        import redis.sentinel

        if self.topology == "sentinel":
            return redis.sentinel.Sentinel([("127.0.0.1", p) for p in self.sentinels], socket_timeout=10).master_for(
                "mymaster", socket_timeout=10)
        if self.topology == "cluster":
            return redis.cluster.RedisCluster(host="127.0.0.1", port=self.primaries[0], socket_timeout=10)
        return redis.Redis.from_url(self.redis_url, socket_timeout=10)

    # -- config ------------------------------------------------------------------------------------
    def _write_config(self, smsc_port: int, window: int, overrides: dict[str, Any]) -> dict[str, Any]:
        cfg: dict[str, Any] = yaml.safe_load(base_config_path().read_text(encoding="utf-8")) or {}
        cfg["data_dir"] = str(self.workdir)
        smsc = dict(cfg.get("smsc") or {})
        smsc.update(host="127.0.0.1", port=int(smsc_port), system_id="smsbot", password="secret",
                    bind_mode="transceiver", window=int(window), reconnect_initial=0.2, reconnect_max=2,
                    registered_delivery=0)
        cfg["smsc"] = smsc
        redis_cfg = dict(cfg.get("redis") or {})
        redis_cfg["url"] = None  # the bundled server in data_dir
        redis_cfg["mode"] = "single"
        cfg["redis"] = redis_cfg
        cfg.setdefault("log", {})
        cfg["log"] = dict(cfg["log"], level="WARNING", format="json")
        cfg["metrics"] = dict(cfg.get("metrics") or {}, port=0)
        for dotted, value in overrides.items():
            node = cfg
            *path, last = dotted.split(".")
            for p in path:
                node = node.setdefault(p, {})
            node[last] = value
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return cfg

    @property
    def prefix(self) -> str:
        return str(self.config["redis"].get("key_prefix") or "smsbot")

    @property
    def shards(self) -> int:
        return int(self.config["redis"].get("shards") or 16)

    # -- one-shot commands -------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        try:
            res = subprocess.run(self.base + list(args), cwd=str(self.workdir), env=self.env, stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=timeout, preexec_fn=_child_setup)
        except subprocess.TimeoutExpired:
            raise ScenarioError(f"`smsbot {' '.join(args)}` did not finish within {timeout}s") from None
        if check and res.returncode != 0:
            err = (res.stderr or res.stdout).decode(errors="replace").strip()
            raise ScenarioError(f"`smsbot {' '.join(args)}` exited {res.returncode}: {err[-800:]}")
        return res

    def popen_cli(self, *args: str, log_name: str) -> subprocess.Popen:
        log = open(self.workdir / log_name, "wb")
        try:
            return subprocess.Popen(self.base + list(args), cwd=str(self.workdir), env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_setup)
        finally:
            log.close()

    # -- Redis -------------------------------------------------------------------------------------
    def redis_start(self) -> str:
        if self.topology != "bundled":  # our own nodes run already
            return self.topology
        res = self.cli("redis", "start", timeout=30)
        url = res.stdout.decode().strip().splitlines()[-1]
        self.redis_url = url
        self._client = None
        self.redis_pid()
        return url

    @property
    def redis(self) -> Any:
        if self._client is None:
            self._client = self.client()
        return self._client

    def redis_pid(self, timeout: float = 2.0) -> int | None:
        """The pid of the redis-server answering on our socket (None when none answers)."""
        import redis

        try:
            c = redis.Redis.from_url(self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                pid = int(c.info("server")["process_id"])
            finally:
                c.close()
        except Exception:  # noqa: BLE001 - not answering
            return None
        if pid not in self.redis_pids:
            with open(self.workdir / "chaos-redis-pids", "a") as f:
                f.write(f"{pid}\n")
        self.redis_pids.add(pid)
        self.last_redis_pid = pid
        return pid

    last_redis_pid: int | None = None

    def redis_alive(self, timeout: float = 0.5) -> bool:
        import redis

        try:
            c = redis.Redis.from_url(self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                return bool(c.ping())
            finally:
                c.close()
        except (redis.RedisError, OSError):
            return False

    def signal_redis(self, pid: int | None, sig: int) -> bool:
        """Send `sig` to the redis-server `pid` (got from `redis_pid` before: a stopped server answers
        nothing). Only a live redis-server is signalled."""
        if pid is None or not _is_redis(pid, self.workdir):
            return False
        os.kill(pid, sig)
        return True

    # -- bots --------------------------------------------------------------------------------------
    def start_bots(self, n: int) -> None:
        for i in range(n):
            b = Bot(self, i)
            self.bots.append(b)
            b.start()

    # -- teardown ----------------------------------------------------------------------------------
    def close(self) -> None:
        for b in self.bots:
            try:
                b.stop(timeout=5)
            except Exception:  # noqa: BLE001 - keep closing
                pass
        for pid in list(self.redis_pids):
            if _is_redis(pid, self.workdir):
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
        if self.nodes is not None:
            self.nodes.stop()
        if self.redis_url is not None:
            self.redis_pid(timeout=0.5)  # a server started by a bot after ours died
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001
                pass
        try:  # a server a bot restarted after ours died, if it is still up
            self.redis_pids.add(int((self.workdir / "redis" / "redis.pid").read_text().strip()))
        except (OSError, ValueError):
            pass
        for pid in list(self.redis_pids):  # SIGTERM: the server flushes its AOF and exits
            if _is_redis(pid, self.workdir):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for pid in list(self.redis_pids):
            while _is_redis(pid, self.workdir) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _is_redis(pid, self.workdir):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            self.watchdog.kill()
            self.watchdog.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def script_failures(self) -> list[tuple[float, str]]:
        """Every MO the bots refused because its script failed (``script_failed``, one line each,
        never throttled): (wall-clock time, cause), the cause its error's first word when Redis
        redirected it (`REDIRECTIONS`), else "other". (Whole batches refused are logged once per
        outage: the chaos SMSC's count of temporary errors has them.)"""
        out: list[tuple[float, str]] = []
        for line in self._bot_log_lines():
            if "script_failed" not in line:
                continue
            try:
                ev = json.loads(line)
                at = datetime.fromisoformat(ev["timestamp"]).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            if ev.get("event") == "script_failed":
                word = str(ev.get("error", "")).split(" ", 1)[0]
                out.append((at, word if word in REDIRECTIONS else "other"))
        return out

    def _bot_log_lines(self) -> Iterator[str]:
        """Every line of every bot's log files (a file gone or unreadable is skipped)."""
        for b in self.bots:
            for log in b.logs:
                try:
                    text = log.read_text(errors="replace")
                except OSError:
                    continue
                yield from text.splitlines()

    def bot_log_summary(self) -> dict[str, int]:
        lines = tracebacks = unreachable = errors = batch_failed = script_failed = 0
        for line in self._bot_log_lines():
            lines += 1
            if "Traceback" in line:
                tracebacks += 1
            if "redis_unreachable" in line:
                unreachable += 1
            if '"level": "error"' in line or '"level":"error"' in line:
                errors += 1
            if "redis_batch_failed" in line:
                batch_failed += 1
            if "script_failed" in line:
                script_failed += 1
        return {"lines": lines, "tracebacks": tracebacks, "redis_unreachable_lines": unreachable, "error_lines": errors,
                "redis_batch_failed_lines": batch_failed, "script_failed_lines": script_failed}
