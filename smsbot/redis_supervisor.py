"""Redis faults: one clear line instead of a traceback, retries at start, the bundled server kept alive.

* `RedisProblem`: what is wrong with Redis, for a person — which server (its URL without the
  password), why, and which setting (and environment variable) fixes it. It is a
  ``click.ClickException``: a command that meets it prints that one line to stderr and exits with
  `EXIT_REDIS_CONFIG` (2: wrong or missing password, a URL that is not a Redis URL — it will not heal
  by itself) or `EXIT_REDIS_UNREACHABLE` (3: nothing answers, or the bundled server cannot start —
  try again later). `diagnose()` turns any exception met while connecting into one;
  `open_store()` builds a store and checks it answers (`smsbot.connections.open_store` uses it, so every
  command gets this for free).
* `wait_for()`: ``smsbot run`` keeps trying to start (exponential backoff with jitter, 0.5 s up to
  30 s) until Redis answers or a stop signal arrives, logging the problem once, then at most once a
  minute with a count (`smsbot.log.Throttled`), and ``redis_available`` when it comes. A wrong
  password is retried too (a password rotation may fix the server side), but logged as a
  configuration error.
* `Supervisor`: a thread of a running bot that uses the bundled redis-server (``redis.url`` empty).
  Twice a second it pings the server over its own connection (named ``smsbot-bot:<instance>``, so
  ``smsbot redis stop`` can see running bots); when the server is gone (kill -9, OOM killer) and its
  process no longer exists, it starts it again on the same socket and data directory (the AOF
  keeps the data: at most the last second with ``appendfsync everysec``), logging one
  ``bundled_redis_restarted`` line. Several bots sharing the server restart it once (file lock).
  It does not fight the operator: after ``smsbot redis stop --force`` (which marks the server
  stopped on purpose) it logs ``bundled_redis_stopped_on_purpose`` once and leaves it down until a
  deliberate start (``smsbot redis start``, a new ``smsbot run``); the bot answers "try again"
  meanwhile, and carries on by itself when the server is back. Without ``--force``,
  ``smsbot redis stop`` refuses while bots are connected.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import click
import redis
import redis.exceptions

from smsbot import embedded, log
from smsbot.config import RedisMode, Settings

_log = log.get("smsbot.redis")

EXIT_REDIS_CONFIG = 2
EXIT_REDIS_UNREACHABLE = 3

T = TypeVar("T")


# -- what is wrong, in one line ---------------------------------------------------------------------------
class RedisProblem(click.ClickException):
    """A Redis problem met while connecting, explained in one line (`str()`), with an exit code.

    ``kind``: ``unreachable`` (exit 3), ``bundled_failed`` (exit 3), ``auth`` (exit 2: wrong or
    missing password, or a password the server does not expect), ``config`` (exit 2).
    """

    def __init__(self, kind: str, target: str, reason: str, fix: str):
        self.kind, self.target, self.reason, self.fix = kind, target, reason, fix
        self.exit_code = EXIT_REDIS_CONFIG if self.is_config_error else EXIT_REDIS_UNREACHABLE
        super().__init__(self.line())

    @property
    def is_config_error(self) -> bool:
        return self.kind in ("auth", "config")

    def line(self) -> str:
        what = {
            "unreachable": f"Redis at {self.target} is unreachable ({self.reason})",
            "bundled_failed": f"the bundled redis-server ({self.target}) could not start ({self.reason})",
            "auth": f"configuration error: Redis at {self.target} {self.reason}",
            "config": f"configuration error: {self.reason}",
        }[self.kind]
        return f"{what}: {self.fix}"

    def show(self, file: Any = None) -> None:  # click calls this instead of printing a traceback
        click.echo(f"smsbot: {self.line()}", err=True)

    def log_fields(self) -> dict[str, Any]:
        return {"redis": self.target, "problem": self.kind, "reason": self.reason, "fix": self.fix}


def safe_url(url: str) -> str:
    """A Redis URL without its password (user info and ``password=`` query parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _pw = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
    query = "&".join(
        (kv.split("=", 1)[0] + "=***") if "pass" in kv.split("=", 1)[0].lower() else kv
        for kv in parts.query.split("&")
    ) if parts.query else ""
    out = f"{parts.scheme}://{netloc}{parts.path}"
    return out + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def describe_target(settings: Settings) -> str:
    """Where smsbot looks for Redis, for people (never the password)."""
    r = settings.redis
    if r.mode is RedisMode.SENTINEL:
        return f"sentinel {','.join(r.sentinels) or '(none configured)'} service {r.sentinel_service}"
    if r.mode is RedisMode.CLUSTER:
        return f"cluster {safe_url(r.url or '')}"
    if not r.url:
        er = embedded.layout(settings.data_dir)
        return f"bundled server in {er.directory}, {er.url}"
    return safe_url(r.url)


def _fix_unreachable(settings: Settings) -> str:
    r = settings.redis
    if r.mode is RedisMode.SENTINEL:
        return ("start the Sentinels or check redis.sentinels (env SMSBOT_REDIS_SENTINELS) and redis.sentinel_service "
                "(env SMSBOT_REDIS_SENTINEL_SERVICE)")
    if r.mode is RedisMode.CLUSTER:
        return "start the cluster or point redis.url (env SMSBOT_REDIS_URL) at one of its nodes"
    if not r.url:
        return "the bundled server should be running; see its log in <data_dir>/redis/redis.log"
    return ("start that Redis, or set redis.url (env SMSBOT_REDIS_URL) to the right server "
            "(empty: smsbot runs its bundled redis-server in data_dir)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # redis-py: "Error 111 connecting to 127.0.0.1:1. Connection refused." -> "Connection refused"
    if text.startswith("Error ") and " connecting to " in text and ". " in text:
        text = text.split(". ", 1)[1]
    return text.rstrip(".")


def diagnose(settings: Settings, exc: BaseException) -> RedisProblem:
    """The `RedisProblem` behind an exception met while connecting to (or starting) Redis."""
    if isinstance(exc, RedisProblem):
        return exc
    target = describe_target(settings)
    r = settings.redis
    text = str(exc)
    low = text.lower()
    pw_fix = "set redis.password (env SMSBOT_REDIS_PASSWORD) to the server's password"
    if "without any password configured" in low or ("auth" in low and "no password is set" in low):
        return RedisProblem("auth", target, "has no password, but redis.password is set",
                            "remove redis.password (or SMSBOT_REDIS_PASSWORD), or set one on the server")
    if isinstance(exc, redis.exceptions.AuthenticationError) or "wrongpass" in low or "noauth" in low or "invalid password" in low:
        if "required" in low or "noauth" in low:
            return RedisProblem("auth", target, "requires a password and none is configured", pw_fix)
        return RedisProblem("auth", target, "refused the password (wrong password)", pw_fix)
    if isinstance(exc, ValueError) and ("url" in low or "scheme" in low):
        return _not_a_url(target, text)
    bundled = r.mode is RedisMode.SINGLE and not r.url
    if bundled and isinstance(exc, (RuntimeError, subprocess.CalledProcessError, OSError)) and not isinstance(exc, redis.RedisError):
        reason = text.splitlines()[0] if text else type(exc).__name__
        if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
            reason = exc.stderr.decode(errors="replace").strip().splitlines()[-1]
        return RedisProblem("bundled_failed", target, reason,
                            "check that data_dir (env SMSBOT_DATA_DIR) is writable and see <data_dir>/redis/redis.log, "
                            "or set redis.url (env SMSBOT_REDIS_URL) to an external Redis")
    if isinstance(exc, redis.exceptions.TimeoutError):
        return RedisProblem("unreachable", target, "no answer in time", _fix_unreachable(settings))
    if "protocol error" in low:  # something answers on that address, but it does not speak Redis
        return RedisProblem("unreachable", target, f"what answers there is not Redis: {_reason(exc)}", _fix_unreachable(settings))
    if isinstance(exc, redis.exceptions.ResponseError):  # it answered, but not as Redis should for us
        return RedisProblem("unreachable", target, f"it answered with an error: {_reason(exc)}", _fix_unreachable(settings))
    return RedisProblem("unreachable", target, _reason(exc), _fix_unreachable(settings))


def _not_a_url(target: str, reason: str) -> RedisProblem:
    return RedisProblem("config", target, f"redis.url is not a Redis URL ({reason})",
                        "set redis.url (env SMSBOT_REDIS_URL) to redis://host:port/db, rediss://... or unix:///path")


def check_url(settings: Settings) -> None:
    """Raise the `RedisProblem` (a configuration error, exit 2) of a ``redis.url`` the Redis client
    cannot use (scheme, port, db), without connecting: every command that opens the store checks
    this first (`open_store`), and ``config check`` does too, so they refuse with the same line."""
    url = settings.redis.url
    if not url:
        return
    try:
        redis.connection.parse_url(url)
    except ValueError as e:
        raise _not_a_url(describe_target(settings), str(e)) from None


def cli_arguments(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """redis-cli options reaching the Redis smsbot uses, and the environment it needs
    (``REDISCLI_AUTH``: the password never goes on the command line): the bundled server's socket
    (started when it is not running, as any command needing it does), ``redis.url``, a cluster
    node (``-c``), or the primary the Sentinels name. Raises `RedisProblem` when it cannot."""
    r = settings.redis
    env: dict[str, str] = {}
    try:
        if r.mode is RedisMode.SENTINEL:
            from redis.sentinel import MasterNotFoundError, Sentinel

            try:
                host, port = Sentinel(r.sentinel_addresses(), socket_timeout=5).discover_master(r.sentinel_service)
            except MasterNotFoundError:
                raise RedisProblem("unreachable", describe_target(settings), f"no Sentinel answered with a primary for "
                                   f"{r.sentinel_service!r}", _fix_unreachable(settings)) from None
            opts = ["-h", str(host), "-p", str(port)]
        elif not r.url:
            er = embedded.ensure_running(settings.data_dir, r.fsync_policy)
            return ["-s", str(er.socket)], env
        else:
            check_url(settings)
            u = redis.connection.parse_url(r.url)
            opts = ["-c"] if r.mode is RedisMode.CLUSTER else []
            if u.get("path"):
                opts += ["-s", str(u["path"])]
            else:
                opts += ["-h", str(u.get("host") or "127.0.0.1"), "-p", str(u.get("port") or 6379)]
            if u.get("connection_class") is redis.connection.SSLConnection:
                opts.append("--tls")
            if u.get("db"):
                opts += ["-n", str(u["db"])]
            if u.get("username"):
                opts += ["--user", str(u["username"])]
            if u.get("password"):
                env["REDISCLI_AUTH"] = str(u["password"])
    except CONNECT_ERRORS as e:
        raise diagnose(settings, e) from None
    if r.password:
        env["REDISCLI_AUTH"] = r.password
    return opts, env


CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    redis.RedisError, OSError, subprocess.CalledProcessError, RuntimeError, ValueError,
)


def open_store(settings: Settings, factory: Callable[[], T]) -> T:
    """`factory()` (a Store) checked with a PING; any failure to reach Redis becomes a `RedisProblem`."""
    check_url(settings)
    store: Any = None
    try:
        store = factory()
        store.ping()
        return store
    except CONNECT_ERRORS as e:
        problem = diagnose(settings, e)
        if store is not None:
            try:
                store.close()
            except Exception:  # closing a client that never connected: nothing to do
                pass
        raise problem from None


# -- start: retry until Redis answers ----------------------------------------------------------------------
def wait_for(create: Callable[[], T], settings: Settings | Callable[[], Settings], stop: threading.Event, *,
             wake: threading.Event | None = None, initial: float = 0.5, maximum: float = 30.0,
             log_every_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
             pause: Callable[[threading.Event, float], bool] = threading.Event.wait) -> T | None:
    """`create()` until it stops raising `RedisProblem` (or a redis error); None when `stop` is set.

    The first failure is logged at once (``redis_unavailable``: which server, why, how to fix it, when
    the next try is), then at most one line per `log_every_s` with the number of failed tries
    (a different problem, e.g. unreachable -> wrong password, is logged at once); when it
    succeeds after failures: ``redis_available`` with the time it took. `settings` (or a function
    returning the current ones) names the server in those lines. Setting `wake` ends a wait early
    and retries at once with the backoff reset (the caller sets it on SIGHUP, and with `stop`).
    `clock` (monotonic seconds) times the lines; `pause(event, seconds)` waits a backoff out (True:
    `event` was set); tests give both of a clock they move.
    """
    current = settings if callable(settings) else (lambda: settings)
    delay = initial
    started = clock()
    throttle: log.Throttled | None = None
    last_kind = None
    tries = 0
    while not stop.is_set():
        try:
            result = create()
        except (RedisProblem, redis.RedisError) as e:  # anything else is a bug: no retry hides it
            problem = diagnose(current(), e)
            tries += 1
            wait = min(maximum, delay) * random.uniform(0.75, 1.0)
            if throttle is None or problem.kind != last_kind:  # a new problem is said at once
                throttle = log.Throttled(_log, "redis_unavailable", log_every_s, level="error", clock=clock)
                last_kind = problem.kind
            throttle.hit(**problem.log_fields(), retry_in_s=round(wait, 1), tries=tries)
            woken = pause(wake or stop, wait)
            if stop.is_set():
                return None
            if woken and wake is not None:
                wake.clear()
                delay = initial
            else:
                delay = min(maximum, delay * 2)
            continue
        if tries:
            _log.info("redis_available", redis=describe_target(current()), waited_s=round(clock() - started, 1), tries=tries)
        return result
    return None


# -- running: keep the bundled server alive ----------------------------------------------------------------
class Supervisor:
    """Watch the bundled redis-server of `data_dir` and start it again when it dies (see the module doc).

    Its thread calls `check()` every `interval` seconds; `clock` (monotonic seconds) times what its
    lines say (``down_s``) and their rate limits, so a test calls `check()` itself on a clock it moves."""

    def __init__(self, data_dir: Any, appendfsync: str, instance: str, *, interval: float = 0.5,
                 on_restart: Callable[[], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.instance = instance
        self.interval = interval
        self.on_restart = on_restart
        self.clock = clock
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._er = embedded.layout(data_dir)
        self._client: redis.Redis | None = None
        self._down_since: float | None = None  # when a check first found it not answering
        self._on_purpose = False  # it is down and marked stopped on purpose (said once)
        self._failing = log.Throttled(_log, "bundled_redis_restart_failed", 60.0, level="error", clock=clock)
        self._busy = log.Throttled(_log, "bundled_redis_not_answering", 60.0, level="warning",
                                   recovered_event="bundled_redis_answering", clock=clock)

    def start(self) -> "Supervisor":
        self._thread = threading.Thread(target=self._run, name="redis-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def _connect(self) -> redis.Redis:
        return embedded.client(self._er, self.interval * 2, client_name=f"{embedded.BOT_CLIENT_PREFIX}{self.instance}")

    def _answers(self) -> bool:
        if self._client is None:
            self._client = self._connect()
        try:
            self._client.ping()
            return True
        except (redis.BusyLoadingError, redis.ResponseError):
            return True
        except (redis.RedisError, OSError):
            return False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def check(self) -> None:
        """One look: nothing when the server answers; else start it again, unless it was stopped on
        purpose or its process lives; each outcome logged as the module doc says."""
        if self._answers():
            if self._on_purpose:
                _log.info("bundled_redis_back", socket=str(self._er.socket),
                          down_s=round(self.clock() - (self._down_since or 0), 1))
            self._busy.recovered()
            self._down_since, self._on_purpose = None, False
            return
        if self._down_since is None:
            self._down_since = self.clock()
        try:
            started = embedded.restart_if_down(self.data_dir, self.appendfsync)
        except Exception as e:  # cannot start (disk full, binary gone...): say so, keep trying
            self._failing.hit(data_dir=str(self._er.directory), error=str(e).splitlines()[0] if str(e) else repr(e))
            return
        if started is None:
            if not self._on_purpose:
                self._on_purpose = True
                _log.warning("bundled_redis_stopped_on_purpose", socket=str(self._er.socket),
                             hint="not restarting it: `smsbot redis start` (or a new `smsbot run`) starts it again")
            return
        self._failing.recovered()
        if started:
            self.restarts += 1
            _log.warning("bundled_redis_restarted", socket=str(self._er.socket), pid=embedded.server_pid(self._er),
                         down_s=round(self.clock() - self._down_since, 2), restarts=self.restarts)
            self._down_since = None
            if self.on_restart is not None:
                try:
                    self.on_restart()
                except Exception as e:  # e.g. reloading scripts: the store does it on NOSCRIPT anyway
                    _log.warning("bundled_redis_restart_hook_failed", error=repr(e))
        elif not self._answers():
            pid = embedded.server_pid(self._er)
            if pid is not None:
                self._busy.hit(pid=pid, socket=str(self._er.socket), hint="its process lives (busy or stopped): not restarting it")


def for_settings(settings: Settings, instance: str, **kw: Any) -> Supervisor | None:
    """A supervisor when smsbot manages the bundled server (``redis.mode: single``, ``redis.url`` empty), else None."""
    r = settings.redis
    if r.mode is not RedisMode.SINGLE or r.url:
        return None
    return Supervisor(settings.data_dir, r.fsync_policy, instance, **kw)
