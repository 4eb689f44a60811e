"""Process lifecycle of `smsbot run`: foreground or detached, pidfile, signals, stop and status.

Signal handlers only set flags:
- SIGTERM / SIGINT: stop reading MOs, drain the outbox within ``smsc.drain_timeout``, unbind,
  exit 0; a second one stops at once (unsent replies stay in the Redis outbox: nothing stored is
  lost, the next start or another instance sends them);
- SIGHUP: reload templates, catalogue, menu settings, plans and thresholds without dropping the
  bind; an invalid new configuration is refused and logged, the old one stays. `smsbot.reload.plan_reload()`
  decides, key by key, what takes effect and what needs a restart; the bot logs ONE ``reloaded``
  line listing both (``applied``, ``restart_needed``).

Redis unreachable (or refusing the password) at start: ONE clear line (which server, why, which
setting fixes it), then retries with exponential backoff until it answers or a stop signal arrives
(`smsbot.redis_supervisor.wait_for`); a signal during the wait ends the process at once (exit 0),
and SIGHUP during the wait reads the config file again and retries at once.

The pidfile is held with an exclusive ``flock`` for the life of the process: a second copy on the
same pidfile is refused, and a pidfile left by a process that died (no lock holder) is stale and
simply taken over. Detaching uses python-daemon's `DaemonContext`; the command that detaches waits
until the daemon runs and prints its pid (or says it died, exit 1). `stop` on a bot that is not
running succeeds (exit 0, LSB) and removes a stale pidfile.

A bot on the bundled Redis holds a claim on it (`smsbot.embedded.Claim`) from before `run --daemon`
returns (taken before the fork, kept by the daemon) until it exits: ``smsbot redis stop`` refuses
while a bot starts as while it runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from smsbot import config as config_mod
from smsbot import embedded, log, ports, redis_supervisor
from smsbot.app import Bot
from smsbot.connections import open_store
from smsbot.config import RedisMode, Settings
from smsbot.private import PRIVATE_UMASK, open_private
from smsbot.reload import changed_keys
from smsbot.timefmt import display_zone

_log = log.get("smsbot.daemon")

EXIT_OK = 0
EXIT_ALREADY_RUNNING = 1
EXIT_NOT_RUNNING = 3  # LSB: program is not running


class AlreadyRunning(Exception):
    def __init__(self, pidfile: Path, pid: int | None):
        self.pidfile, self.pid = pidfile, pid
        super().__init__(f"smsbot is already running (pid {pid}) with pidfile {pidfile}")


@dataclass
class PidFile:
    """An flock-held pidfile. `acquire()` raises AlreadyRunning when another live process holds it."""

    path: Path
    _fh: IO[str] | None = None

    def acquire(self) -> "PidFile":
        fh = open(self.path, "a+")  # its directory must exist: smsbot creates none for a path it was given
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                fh.close()
                raise AlreadyRunning(self.path, read_pid(self.path)) from None
            raise
        self._fh = fh
        self.write(os.getpid())
        return self

    def write(self, pid: int) -> None:
        assert self._fh is not None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{pid}\n")
        self._fh.flush()

    def fileno(self) -> int:
        assert self._fh is not None
        return self._fh.fileno()

    def forget(self) -> None:
        """Close this process's handle without unlocking or removing anything (after a fork: the
        other process holds the same open file, hence the lock)."""
        if self._fh is not None:  # flock: the lock stays while any descriptor of that open file lives
            self._fh.close()
            self._fh = None

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            if read_pid(self.path) == os.getpid():
                self.path.unlink()
        except OSError:
            pass
        self._fh.close()
        self._fh = None


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


def is_locked(path: Path) -> bool:
    """True when a live process holds the pidfile's lock."""
    try:
        fh = open(path)
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def status(pidfile: Path) -> tuple[int, str]:
    pid = read_pid(pidfile)
    if is_locked(pidfile):
        return EXIT_OK, f"running (pid {pid})"
    if pidfile.exists():
        return EXIT_NOT_RUNNING, f"not running (stale pidfile {pidfile}, pid {pid})"
    return EXIT_NOT_RUNNING, "not running"


def stop(pidfile: Path, timeout: float = 30.0) -> tuple[int, str]:
    """SIGTERM the bot holding `pidfile` and wait for it to exit. Not running is success too (LSB:
    exit 0), and a stale pidfile (no process holds it) is removed."""
    pid = read_pid(pidfile)
    if not is_locked(pidfile) or pid is None:
        if _remove_stale(pidfile, pid):
            return EXIT_OK, f"not running (removed stale pidfile {pidfile})"
        return EXIT_OK, "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # exited meanwhile
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_locked(pidfile):
            _remove_stale(pidfile, pid)  # normally the bot removed it itself
            return EXIT_OK, f"stopped (pid {pid})"
        time.sleep(0.05)
    return 1, f"pid {pid} did not stop within {timeout:.0f}s"


def _remove_stale(pidfile: Path, pid: int | None) -> bool:
    """Remove `pidfile` when no process holds it and it still names `pid` (not a new bot's)."""
    if not pidfile.exists() or is_locked(pidfile) or read_pid(pidfile) != pid:
        return False
    try:
        pidfile.unlink()
    except OSError:
        return False
    return True


class _StopDuringStart(BaseException):
    """Raised by the stop-signal handler while the bot is still being built (e.g. waiting for Redis)."""


def claim_bundled_redis(settings: Settings) -> embedded.Claim | None:
    """This process's claim on the bundled redis-server it is about to use (`smsbot.embedded.Claim`):
    from now on ``smsbot redis stop`` refuses, naming this bot, even before it connects. None when
    smsbot uses an external Redis (``redis.url`` or another mode)."""
    r = settings.redis
    if r.mode is not RedisMode.SINGLE or r.url:
        return None
    return embedded.claim(settings.data_dir, f"pid {os.getpid()}, starting")


def serve(settings: Settings, config_path: str | Path | None, pidfile: PidFile | None = None,
          claim: embedded.Claim | None = None) -> int:
    """Run the bot in this process until a stop signal; returns the exit code.

    While Redis does not answer at start, the bot is not built yet: a stop signal ends the wait (exit
    0), SIGHUP reads the config file again and retries at once (e.g. after fixing redis.password).
    `claim` (this process's on the bundled Redis) is labelled with the bot's name once it is built
    and released at the end.
    """

    bot: Any = None
    stops = 0
    current = settings
    starting = threading.Event()  # set by a stop signal before the bot exists
    wake = threading.Event()  # ends a backoff wait early: a stop signal or SIGHUP
    hup_pending = threading.Event()
    in_create = False

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if bot is not None:
            bot.request_stop(force=stops > 1)
            return
        starting.set()
        wake.set()
        if in_create:  # interrupt a connect that may block for seconds
            raise _StopDuringStart

    def on_hup(signum: int, _frame: FrameType | None) -> None:
        if bot is not None:
            bot.request_reload()
        else:
            hup_pending.set()
            wake.set()

    def reload_before_start() -> None:
        nonlocal current
        hup_pending.clear()
        if config_path is None:
            _log.warning("reload_ignored", reason="started without a config file path")
            return

        try:
            new = config_mod.reload(current, config_path)
        except config_mod.ConfigError as e:
            _log.error("reload_refused", errors=e.lines())
            return
        changed = changed_keys(current.model_dump(mode="json"), new.model_dump(mode="json"))
        if any(k.startswith("log.") for k in changed):
            log.apply(new.log)
        if "billing.timezone" in changed:
            log.set_zone(display_zone(new))
        current = new
        _log.info("reloaded", applied=changed, restart_needed=[], before_start=True)

    def create() -> Any:
        nonlocal in_create
        if hup_pending.is_set():
            reload_before_start()
        in_create = True
        try:
            if starting.is_set():
                raise _StopDuringStart
            return Bot(current, config_path=config_path)
        finally:
            in_create = False

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        try:
            bot = redis_supervisor.wait_for(create, lambda: current, starting, wake=wake)
        except _StopDuringStart:
            bot = None
        if bot is None:
            _log.info("exit", stop_signals=stops, reason="stopped while waiting for Redis")
            return EXIT_OK
        if claim is not None:
            claim.relabel(bot.instance)
        bot.run()
    finally:
        if bot is not None:
            _log.info("exit", stop_signals=stops)
        if claim is not None:
            claim.release()
        if pidfile is not None:
            pidfile.release()
    return EXIT_OK


def run_foreground(settings: Settings, config_path: str | Path | None = None, pidfile: Path | None = None) -> int:
    pf = PidFile(pidfile).acquire() if pidfile else None
    return serve(settings, config_path, pf, claim_bundled_redis(settings))


READY_TIMEOUT_S = 30.0


def run_detached(settings: Settings, config_path: str | Path | None, pidfile: Path, log_file: Path) -> int:
    """Detach (double fork, new session, cwd /), keep the pidfile lock, log JSON to `log_file`.

    The calling process waits until the daemon runs, prints ``smsbot running in the background (pid
    N)`` with the pidfile and the log file, and returns 0 (1 if the daemon died first)."""
    import sys

    import daemon as pydaemon

    pidfile, log_file = Path(pidfile).absolute(), Path(log_file).absolute()  # the daemon runs in /
    pf = PidFile(pidfile).acquire()  # refuse before detaching, so the error reaches the terminal
    warn_if_redis_unavailable(settings)
    out = open_private(log_file)
    claim = claim_bundled_redis(settings)  # held by the daemon from before this command returns
    config_path = str(Path(config_path).resolve()) if config_path else None  # data_dir is absolute already (config.load)
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:  # the command the user ran: report once the daemon runs
        os.close(ready_w)
        out.close()
        pf.forget()  # the daemon holds the lock (the same open file) and the file
        if claim is not None:
            claim.forget()  # likewise
        return _report_daemon(ready_r, pidfile, log_file)
    os.close(ready_r)
    keep = [pf.fileno(), out.fileno(), ready_w] + ([claim.fileno()] if claim is not None else [])
    ctx = pydaemon.DaemonContext(
        working_directory="/", umask=PRIVATE_UMASK, files_preserve=keep, stdout=out, stderr=out,
        detach_process=True, signal_map={},
    )
    with ctx:
        pf.write(os.getpid())
        if claim is not None:
            claim.relabel(f"pid {os.getpid()}, starting")
        log.setup(settings.log, stream=out, force=True, zone=display_zone(settings))
        try:
            os.write(ready_w, f"{os.getpid()}\n".encode())
        finally:
            os.close(ready_w)

        try:
            return serve(settings, config_path, pf, claim)
        except ports.PortProblem as e:  # metrics.port taken after the check: one line in the log
            _log.error("port_in_use", problem=e.line())
            return ports.EXIT_PORT


def _report_daemon(ready: int, pidfile: Path, log_file: Path) -> int:
    import select
    import sys

    got = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while b"\n" not in got and (left := deadline - time.monotonic()) > 0:
            readable, _w, _x = select.select([ready], [], [], left)
            if not readable:
                break
            chunk = os.read(ready, 64)
            if not chunk:
                break
            got += chunk
    finally:
        os.close(ready)
    if b"\n" not in got:
        print(f"smsbot: the daemon did not start; see {log_file}", file=sys.stderr, flush=True)
        return 1
    pid = int(got.split(b"\n", 1)[0])
    print(f"smsbot running in the background (pid {pid}); pidfile {pidfile}; logs in {log_file}", flush=True)
    return EXIT_OK


def warn_if_redis_unavailable(settings: Settings) -> None:
    """Before detaching: say on the terminal that Redis does not answer (the daemon keeps retrying)."""
    import sys


    try:
        open_store(settings).close()
    except redis_supervisor.RedisProblem as p:
        print(f"smsbot: warning: {p.line()}; the daemon starts anyway and retries until Redis answers", file=sys.stderr, flush=True)
