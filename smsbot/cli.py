"""The `smsbot` command line: one click group; each subcommand is thin and calls into the modules.

Global options also read the environment (``SMSBOT_CONFIG``, ``SMSBOT_LOG_LEVEL``). Every command
loads and validates the configuration first and refuses to start on an invalid one, printing
each offending key (exit code 2), never a traceback.

Which configuration: ``--config PATH`` (or ``SMSBOT_CONFIG``), else ``./config.yaml``, else the one
next to the package (a source checkout). Every command that touches state (Redis, the bundled
server, the pidfile's bot) says on stderr which file it uses and where the data is — unless the
file was named explicitly and stderr is not a terminal (scripts, tests) — and says so louder when
no ``config.yaml`` was found in the current directory. Bad input gets one line naming what is
wrong and how to fix it, an exit code, no traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from smsbot import config as config_mod
from smsbot import log
from smsbot.msisdn import DEFAULT_COUNTRY_CODE, normalize_msisdn

EXIT_CONFIG = 2

# top-level commands that touch state: they say which config file and data they use (`Ctx.announce`)
STATE_COMMANDS = frozenset({"run", "subs", "order", "use", "billing", "usage", "mt", "redis"})


class Ctx:
    def __init__(self, config_path: str | None, command: str | None = None):
        self.config_path = config_path  # named with --config / SMSBOT_CONFIG, else None
        self.command = command  # the top-level subcommand being run
        self._settings: config_mod.Settings | None = None
        self._announced = False

    def config_file(self) -> tuple[Path, str]:
        """(path, how): how is ``given`` (--config / SMSBOT_CONFIG), ``cwd`` (./config.yaml) or
        ``fallback`` (no config.yaml here: the one next to the package, a source checkout's)."""
        if self.config_path:
            return Path(self.config_path), "given"
        here = Path.cwd() / config_mod.DEFAULT_CONFIG_NAME
        if here.exists():
            return here, "cwd"
        return config_mod.default_config_path(), "fallback"

    @property
    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            path, how = self.config_file()
            if how == "fallback" and not path.exists():
                click.echo(f"smsbot: no configuration: no {config_mod.DEFAULT_CONFIG_NAME} in {Path.cwd()}; "
                           "pass --config PATH or set SMSBOT_CONFIG", err=True)
                sys.exit(EXIT_CONFIG)
            try:
                self._settings = config_mod.load(self.config_path)
            except config_mod.ConfigError as e:
                click.echo(str(e), err=True)
                sys.exit(EXIT_CONFIG)
            if self.command in STATE_COMMANDS:
                self.announce()
        return self._settings

    def where(self) -> str:
        """'config /abs/config.yaml; data in /abs/var' (or the Redis used), for people."""
        s = self.settings
        path, how = self.config_file()
        r = s.redis
        if r.mode.value == "single" and not r.url:
            data = f"data in {s.data_dir.resolve()}"
        else:
            from smsbot.redis_supervisor import describe_target

            data = f"redis {describe_target(s)}"
        if how == "fallback":
            return (f"no {config_mod.DEFAULT_CONFIG_NAME} in {Path.cwd()} and no --config or SMSBOT_CONFIG: "
                    f"using the defaults of {path.resolve()}; {data}")
        return f"config {path.resolve()}; {data}"

    def announce(self) -> None:
        """Once per command, on stderr: which config file and data (see the module doc); and, from
        then on, a line whenever a bundled redis-server is started."""
        if self._announced:
            return
        self._announced = True
        from smsbot import embedded

        _path, how = self.config_file()
        if self.command == "run" and not _stderr_tty():
            # stderr carries the bot's JSON log lines: `run` logs these as events instead (config_in_use,
            # bundled_redis_started), never a plain line among them
            embedded.on_start = _log_started
            return
        embedded.on_start = _say_started
        if how == "given" and not _stderr_tty():
            return
        click.echo(f"smsbot: {self.where()}", err=True)


def _say_started(er: "object") -> None:
    directory = getattr(er, "directory", "?")
    click.echo(f"smsbot: started the bundled redis-server for {directory} (it keeps running in the background; "
               "`smsbot redis stop` ends it, `smsbot redis status` lists every one smsbot started)", err=True)


def _log_started(er: "object") -> None:
    log.get("smsbot.redis").warning("bundled_redis_started", directory=str(getattr(er, "directory", "?")),
                                    hint="it keeps running in the background; `smsbot redis stop` ends it")


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


pass_ctx = click.make_pass_decorator(Ctx)


class BadInput(click.ClickException):
    """A usage error (bad argument or option) as ONE line: what is wrong, where the help is; exit 2."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"smsbot: {self.message}", err=True)


def _one_line(e: click.UsageError) -> BadInput:
    path = e.ctx.command_path if e.ctx is not None else "smsbot"
    message = " ".join(e.format_message().split()).rstrip(".")
    return BadInput(f"{message} (see `{path} --help`)")


class _Group(click.Group):
    """The top-level group: usage errors anywhere below it become `BadInput` (click's own display is
    three lines: usage, a hint, the error)."""

    def make_context(self, *args: object, **kw: object) -> click.Context:
        try:
            return super().make_context(*args, **kw)  # type: ignore[arg-type]
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _one_line(e) from None

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _one_line(e) from None

COMPLETION_HELP = """\b
Shell completion: add this line to ~/.bashrc (zsh: zsh_source in ~/.zshrc; fish: fish_source):
  eval "$(_SMSBOT_COMPLETE=bash_source smsbot)"
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SMSBOT_CLI"},
             epilog=COMPLETION_HELP)
@click.option("--config", "config_path", envvar="SMSBOT_CONFIG", type=click.Path(dir_okay=False), default=None,
              help="config file (default ./config.yaml); env SMSBOT_CONFIG")
@click.version_option(package_name="smsbot", prog_name="smsbot", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """smsbot: SMS short-code command processor (0000 menus and cancel) over SMPP 3.4 with Redis state."""
    ctx.obj = Ctx(config_path, ctx.invoked_subcommand)


# -- config ---------------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@pass_ctx
def config_check(c: Ctx) -> None:
    """Validate the configuration; print every error with its key (exit 2 when invalid)."""
    s = c.settings
    import commands
    from smsbot.router import check_templates

    problems = check_templates(s, commands.registry())
    if problems:
        click.echo(str(config_mod.error_in_file(problems, c.config_file()[0])), err=True)
        sys.exit(EXIT_CONFIG)
    click.echo(f"smsbot: {c.where()}", err=True)
    click.echo(
        f"configuration OK: {len(s.short_codes)} short code(s) "
        f"({', '.join(sc.code for sc in s.short_codes)}), {len(s.services)} service(s), "
        f"SMSC {s.smsc.host}:{s.smsc.port}, redis {s.redis.mode.value}: {'bundled in ' + str(s.data_dir) if s.redis.mode.value == 'single' and not s.redis.url else 'external'}"
    )


# -- bot --------------------------------------------------------------------------------------------
@main.command("run")
@click.option("--daemon", "detach", is_flag=True, help="detach from the terminal (needs --pidfile)")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), envvar="SMSBOT_PIDFILE", default=None,
              help="hold this pidfile; a second copy on it is refused")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="with --daemon: where the JSON logs go (default <data_dir>/smsbot.log)")
@pass_ctx
def run(c: Ctx, detach: bool, pidfile: Path | None, log_file: Path | None) -> None:
    """Run the bot until SIGTERM/SIGINT (drain, unbind; a second signal stops at once). SIGHUP reloads."""
    from smsbot import daemon, ports

    s = c.settings
    if pidfile is not None:
        pidfile = pidfile.absolute()  # --daemon changes to /: a relative path would name another file
    if s.metrics.port:  # say it now, not after waiting for Redis (and before detaching)
        ports.check([ports.metrics_listener(s.metrics.host, s.metrics.port)])
    if s.api.port:  # the HTTP API this run starts (smsbot.api)
        ports.check([ports.Listener(s.api.host, s.api.port, "the HTTP API", "api.port", "SMSBOT_API_PORT", "",
                                    "another `smsbot run` or `smsbot api`? each needs its own api.port")])
    try:
        if detach:
            if pidfile is None:
                raise click.UsageError("--daemon needs --pidfile")
            code = daemon.run_detached(s, c.config_path or config_mod.default_config_path(), pidfile,
                                       (log_file or s.data_dir / "smsbot.log").absolute())
        else:
            log.setup(s.log)
            log.get("smsbot.bot").info("config_in_use", where=c.where())
            code = daemon.run_foreground(s, c.config_path or config_mod.default_config_path(), pidfile)
    except daemon.AlreadyRunning as e:
        click.echo(str(e), err=True)
        code = daemon.EXIT_ALREADY_RUNNING
    sys.exit(code)


@main.command("stop")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), envvar="SMSBOT_PIDFILE", required=True)
@click.option("--timeout", type=float, default=30.0, show_default=True)
def stop_cmd(pidfile: Path, timeout: float) -> None:
    """Stop the bot holding PIDFILE (SIGTERM: drain and unbind) and wait for it to exit.

    Exit 0 when it stopped or was not running (LSB), 1 when it did not stop in time."""
    from smsbot import daemon

    code, text = daemon.stop(pidfile, timeout)
    click.echo(text)
    sys.exit(code)


@main.command("status")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), envvar="SMSBOT_PIDFILE", required=True)
def status_cmd(pidfile: Path) -> None:
    """Is the bot holding PIDFILE running? Exit 0 when running, 3 when not (LSB)."""
    from smsbot import daemon

    code, text = daemon.status(pidfile)
    click.echo(text)
    sys.exit(code)


@main.group("mt")
def mt_group() -> None:
    """Sent messages (MT) and their delivery state."""


@mt_group.command("show")
@click.argument("message_id")
@pass_ctx
def mt_show(c: Ctx, message_id: str) -> None:
    """Print the stored state of the MT the SMSC called MESSAGE_ID (x<entry> for rejected ones)."""
    from smsbot.app import build_store

    st = build_store(c.settings)
    try:
        records = st.mt_records(message_id)
    finally:
        st.close()
    if not records:
        click.echo(f"no record of message {message_id}", err=True)
        sys.exit(1)
    tz = _zone(c)
    for i, rec in enumerate(records):
        if len(records) > 1:
            click.echo(f"# {i + 1} of {len(records)} under this id")
        for k in sorted(rec):
            click.echo(f"{k}\t{_time_or_value(rec[k], tz) if k in _MT_TIME_FIELDS else rec[k]}")


_MT_TIME_FIELDS = frozenset({"at", "receipt_at"})


def _time_or_value(value: object, tz: object) -> str:
    from smsbot.timefmt import fmt_ms

    try:
        return fmt_ms(int(str(value)), tz)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


@mt_group.command("list")
@click.option("--state", default=None, help="only MTs in this state, e.g. REJECTED, ENROUTE, DELIVRD, UNDELIV (any case)")
@click.option("--msisdn", "msisdn", default=None, help="only MTs to this subscriber")
@click.option("--limit", type=click.IntRange(1, 100000), default=20, show_default=True, help="the most recent N")
@pass_ctx
def mt_list(c: Ctx, state: str | None, msisdn: str | None, limit: int) -> None:
    """Recent MT records, newest first: time, id (for `mt show`), state, to, template, part, status.

    Rejected MTs are always recorded (id x<entry>); sent parts only when records are kept
    (dispatch.mt_records: always, or auto with smsc.registered_delivery: 1). Scans the MT keys
    (SCAN): meant for testers and ops, not for millions of records.
    """
    from smsbot.app import build_store

    number = _msisdn_or_exit(msisdn, "--msisdn") if msisdn is not None else None
    want = state.strip().upper() if state else None
    st = build_store(c.settings)
    try:
        rows = _mt_rows(st)
    finally:
        st.close()
    rows = [r for r in rows if (want is None or str(r.get("state", "")).upper() == want)
            and (number is None or r.get("to") == number)]
    if not rows:
        click.echo("no MT records" + (f" in state {want}" if want else "") + (f" to {number}" if number else ""))
        return
    rows.sort(key=lambda r: int(r.get("at", 0) or 0), reverse=True)
    tz = _zone(c)
    for r in rows[:limit]:
        part = f"{r.get('part', '1')}/{r.get('parts', '1')}"
        status = r.get("status") or r.get("err") or ""
        click.echo("\t".join([_time_or_value(r.get("at", ""), tz), r["_id"], str(r.get("state", "?")), str(r.get("to", "?")),
                              str(r.get("tpl", "")), part, str(status)]))
    if len(rows) > limit:
        click.echo(f"({len(rows) - limit} older not shown; --limit N)", err=True)


def _mt_rows(st: "object") -> list[dict[str, str]]:
    """Every MT record under the key prefix: sent parts (one list per message id) and rejected MTs."""
    import json

    redis = st.redis  # type: ignore[attr-defined]
    prefix = f"{st.keys.prefix}:mt:"  # type: ignore[attr-defined]
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter(match=prefix + "{*", count=1000)]
    keys = [k for k in keys if not k.endswith(":dlr")]
    rows: list[dict[str, str]] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        pipe = redis.pipeline(transaction=False)
        for k in chunk:
            if k.endswith(":rejected"):
                pipe.get(k)
            else:
                pipe.lrange(k, 0, -1)
        for k, got in zip(chunk, pipe.execute(raise_on_error=False)):
            if got is None or isinstance(got, Exception):
                continue
            mid = k[len(prefix) + 1:].split("}", 1)[0]
            for raw in (got if isinstance(got, list) else [got]):
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    rows.append({**{str(a): str(b) for a, b in rec.items()}, "_id": mid})
    return rows


# -- simulator and handsets ---------------------------------------------------------------------
@main.command("smsc")
@click.option("--smpp-port", type=click.IntRange(0, 65535), default=None,
              help="SMPP port (default simulator.smpp_port, 2775); bots then need smsc.port / SMSBOT_SMSC_PORT set to it")
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="handset API port (default simulator.control_port, 8775); handsets then need --control")
@pass_ctx
def smsc(c: Ctx, smpp_port: int | None, control_port: int | None) -> None:
    """Run the simulated SMSC (SMPP on simulator.smpp_port, handset API on simulator.control_port).

    Moving it (--smpp-port, or simulator.smpp_port / SMSBOT_SIMULATOR_SMPP_PORT) means telling the
    bot too: `SMSBOT_SMSC_PORT=<port> smsbot run`.
    """
    from smsbot import ports
    from smsbot.simulator.smsc import SimSmsc

    s = c.settings
    sp = s.simulator.smpp_port if smpp_port is None else smpp_port
    cp = s.simulator.control_port if control_port is None else control_port
    listeners = ports.simulator_listeners(s.simulator.host, sp, cp)
    ports.check(listeners)
    log.setup(s.log)
    sim = SimSmsc.from_settings(s, smpp_port=sp, control_port=cp)
    try:
        sim.start()
    except OSError as e:  # taken between the check and now
        raise ports.explain(e, listeners) from None
    hint = "" if sim.smpp_port == s.smsc.port else f" (run the bot with SMSBOT_SMSC_PORT={sim.smpp_port})"
    click.echo(f"smsbot: simulated SMSC: SMPP on {s.simulator.host}:{sim.smpp_port}{hint}, handset API {sim.control_url}; "
               "Ctrl-C stops it", err=True)
    sim.serve_forever()


@main.command("handset")
@click.argument("msisdn")
@click.option("--to", "to", default=None, help="short code (default: the first configured)")
@click.option("--send", "send", default=None, help="text to send, then print the replies and exit")
@click.option("--wait", "wait", type=click.FloatRange(0, 3600), default=None,
              help="seconds to wait for messages (default 3 with --send); without --send: only collect this long, then exit")
@click.option("--control", "control", default=None, help="simulator control URL (default from config)")
@pass_ctx
def handset(c: Ctx, msisdn: str, to: str | None, send: str | None, wait: float | None, control: str | None) -> None:
    """A handset on the simulator for MSISDN: send one text (--send), only collect (--wait N), or,
    with neither, an interactive prompt (line editing and history on a terminal)."""
    from smsbot.simulator.handset import run_handset

    s = c.settings
    number = _msisdn_or_exit(msisdn)
    url = control or f"http://{s.simulator.host}:{s.simulator.control_port}"
    collect_only = send is None and wait is not None
    sys.exit(run_handset(url, number, to or s.short_codes[0].code, send, 3.0 if wait is None else wait,
                         collect_only=collect_only, tz=_zone(c)))


@main.command("demo")
@click.option("--msisdn", default="13800138000", show_default=True, help="the demo subscriber")
@click.option("--send", "sends", multiple=True, help="send these texts in order instead of opening the prompt")
@click.option("--wait", type=float, default=3.0, show_default=True, help="seconds to wait for each reply")
@click.option("--smpp-port", type=click.IntRange(0, 65535), default=None, help="the simulator's SMPP port (default simulator.smpp_port)")
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="the simulator's handset API port (default simulator.control_port)")
@pass_ctx
def demo(c: Ctx, msisdn: str, sends: tuple[str, ...], wait: float, smpp_port: int | None, control_port: int | None) -> None:
    """Start bundled Redis, the simulated SMSC and the bot, seed a subscriber, open a handset prompt."""
    from smsbot import demo as demo_mod

    s = c.settings
    if smpp_port is not None or control_port is not None:
        sim = s.simulator.model_copy(update={k: v for k, v in (("smpp_port", smpp_port), ("control_port", control_port))
                                             if v is not None})
        s = s.model_copy(update={"simulator": sim})
    sys.exit(demo_mod.run(s, _msisdn_or_exit(msisdn), list(sends), wait, where=c.where(), tz=_zone(c)))


# -- catalogue and subscriptions ------------------------------------------------------------------
@main.group("catalog")
def catalog() -> None:
    """The service catalogue."""


@catalog.command("list")
@pass_ctx
def catalog_list(c: Ctx) -> None:
    """One service per line: code, price, billing kind, name."""
    for svc in c.settings.services:
        click.echo(f"{svc.code}\t{svc.price_fen / 100:.2f}\t{svc.kind.value}\t{svc.name}")


@main.group("subs")
def subs() -> None:
    """Manage subscriptions (writes the audit stream)."""


@subs.command("add")
@click.argument("msisdn")
@click.argument("service_code")
@pass_ctx
def subs_add(c: Ctx, msisdn: str, service_code: str) -> None:
    """Subscribe MSISDN to SERVICE_CODE."""
    from smsbot import admin

    number = _msisdn_or_exit(msisdn)
    code = _service_or_exit(c, service_code)
    outcome = admin.subscribe(c.settings, number, code)
    click.echo(f"{number} {code}: {outcome}")


@subs.command("remove")
@click.argument("msisdn")
@click.argument("service_code")
@pass_ctx
def subs_remove(c: Ctx, msisdn: str, service_code: str) -> None:
    """Cancel MSISDN's subscription to SERVICE_CODE."""
    from smsbot import admin

    number = _msisdn_or_exit(msisdn)
    code = _service_or_exit(c, service_code)
    click.echo(f"{number} {code}: {admin.unsubscribe(c.settings, number, code)}")


@subs.command("list")
@click.argument("msisdn")
@click.option("--all", "show_all", is_flag=True, help="include cancelled subscriptions")
@pass_ctx
def subs_list(c: Ctx, msisdn: str, show_all: bool) -> None:
    """MSISDN's subscriptions, in menu order: code, state, price, since, name."""
    from smsbot import admin

    from smsbot.timefmt import fmt_ms

    number = _msisdn_or_exit(msisdn)
    rows = admin.list_subscriptions(c.settings, number, include_cancelled=show_all)
    if not rows:
        click.echo(f"{number}: no subscriptions")
    tz = _zone(c)
    for r in rows:
        click.echo(f"{r.code}\t{r.state}\t{r.price_fen / 100:.2f}\t{fmt_ms(r.since_ms, tz)}\t{r.name}")


@subs.command("seed")
@click.option("--from", "first", required=True, help="first MSISDN")
@click.option("--count", type=int, required=True)
@click.option("--services", required=True, help="comma-separated service codes")
@pass_ctx
def subs_seed(c: Ctx, first: str, count: int, services: str) -> None:
    """Bulk-subscribe COUNT consecutive numbers (benchmarks, load tests)."""
    from smsbot import admin

    start = _msisdn_or_exit(first)
    codes = [_service_or_exit(c, x.strip()) for x in services.split(",") if x.strip()]
    n = admin.seed(c.settings, start, count, codes)
    click.echo(f"seeded {n} subscriptions for {count} subscribers")


# -- bundled redis --------------------------------------------------------------------------------
@main.group("redis")
def redis_group() -> None:
    """The bundled redis-server (used when redis.url is empty): start, stop, status.

    smsbot starts it by itself when a command needs it (in <data_dir>/redis, a unix socket, AOF); it
    then keeps running in the background, shared by every smsbot process with the same data_dir,
    so state survives restarts. `stop` ends it; `status` also lists every one smsbot started.
    """


def _bundled_or_exit(c: Ctx) -> None:
    r = c.settings.redis
    if r.mode.value != "single" or r.url:
        click.echo(f"smsbot: redis.url (or redis.mode {r.mode.value}) is set: smsbot uses that Redis, not a bundled one", err=True)
        sys.exit(EXIT_CONFIG)


@redis_group.command("start", short_help="Start it (or find it running) and print its URL.")
@pass_ctx
def redis_start(c: Ctx) -> None:
    """Start the bundled redis-server for data_dir (or find it running); print its URL.

    Not needed before `smsbot run` (which starts it), but it clears a `smsbot redis stop`: running
    bots then use the server again.
    """
    from smsbot import embedded, redis_supervisor

    _bundled_or_exit(c)
    try:
        er = embedded.ensure_running(c.settings.data_dir, c.settings.redis.appendfsync)
    except redis_supervisor.CONNECT_ERRORS as e:
        raise redis_supervisor.diagnose(c.settings, e) from None
    click.echo(er.url)


@redis_group.command("stop", short_help="Stop it (data kept); refused while bots use it.")
@click.option("--force", is_flag=True, help="stop it even while bots use it (they then wait for `smsbot redis start`)")
@pass_ctx
def redis_stop(c: Ctx, force: bool) -> None:
    """Stop the bundled redis-server for data_dir (AOF flushed: the data stays in <data_dir>/redis).
    Refused while running bots use it, unless --force.

    Running bots restart the bundled server when it dies (kill -9, crash), but not after this
    command: they leave it down, answering "try again", until `smsbot redis start` or a new
    `smsbot run` starts it.
    """
    from smsbot import embedded

    _bundled_or_exit(c)
    users = embedded.bots(c.settings.data_dir)
    if users and not force:
        click.echo(f"smsbot: not stopped: {len(users)} running bot(s) use this Redis ({', '.join(users)}); "
                   "stop them first, or use --force (they then answer 'try again' until `smsbot redis start`)", err=True)
        sys.exit(1)
    stopped = embedded.stop(c.settings.data_dir)
    click.echo(("stopped" + (f"; {len(users)} running bot(s) wait for `smsbot redis start`" if users else "")) if stopped else "not running")


@redis_group.command("status", short_help="Is it running? Also lists every bundled server smsbot started.")
@pass_ctx
def redis_status(c: Ctx) -> None:
    """Is the bundled redis-server for data_dir running? Exit 0 running, 3 not (LSB).

    Then lists the other bundled servers smsbot started on this machine (for this user) that still
    run, with the command that stops each: a command run in a directory without its config.yaml
    starts a server of its own there.
    """
    from smsbot import embedded

    _bundled_or_exit(c)
    er = embedded.layout(c.settings.data_dir)
    pid = embedded.server_pid(er)
    code = 0
    if embedded.answers(er):
        users = embedded.bots(c.settings.data_dir)
        click.echo(f"running (pid {pid}) on {er.url}, data in {er.directory}; bots: {', '.join(users) or 'none'}")
    else:
        why = "stopped with `smsbot redis stop`" if er.stop_marker.exists() else "not running"
        click.echo(f"{why}; data in {er.directory}" + (f" (pid {pid} lives but does not answer)" if pid else ""))
        code = 3
    others = [i for i in embedded.started_servers() if Path(i["directory"]) != er.directory]
    if others:
        from smsbot.timefmt import fmt_seconds

        tz = _zone(c)
        click.echo(f"other bundled redis-servers smsbot started ({len(others)}):")
        for i in others:
            data_dir = Path(i["directory"]).parent
            state = "" if i.get("answers") else ", not answering"
            click.echo(f"  pid {i['pid']}: data in {i['directory']} (started {fmt_seconds(i.get('started', 0), tz)} "
                       f"from {i.get('cwd', '?')}{state}); stop: SMSBOT_DATA_DIR={data_dir} smsbot redis stop")
    sys.exit(code)


def _msisdn_or_exit(value: str, param_hint: str = "MSISDN") -> str:
    """The subscriber key of `value` (national and international forms alike, `smsbot.msisdn`, with the
    configured subscribers.country_code), or a usage error (exit 2) saying what is wrong."""
    try:
        return normalize_msisdn(value, _country_code())
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=param_hint) from None


def _country_code() -> str:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Ctx) if ctx is not None else None
    if obj is None:
        return DEFAULT_COUNTRY_CODE
    return obj.settings.subscribers.country_code


def _zone(c: Ctx) -> "object":
    """The one zone the CLI prints times in, labelled (billing.timezone; `smsbot.timefmt`)."""
    from smsbot.timefmt import display_zone

    return display_zone(c.settings)


def _service_or_exit(c: Ctx, code: str) -> str:
    code = code.strip().upper()
    if c.settings.service(code) is None:
        known = ", ".join(s.code for s in c.settings.services)
        raise click.BadParameter(f"unknown service code {code!r}; known: {known}", param_hint="SERVICE_CODE")
    return code


from smsbot import cli_usage  # noqa: E402,F401  (registers `smsbot usage`)
from smsbot import cli_billing  # noqa: E402,F401  (registers `smsbot order`, `smsbot use`, `smsbot billing`)
from smsbot import cli_tickets  # noqa: E402,F401  (registers `smsbot tickets`; loads the command registry)
from smsbot import cli_api  # noqa: E402,F401  (registers `smsbot api`)

if __name__ == "__main__":  # pragma: no cover
    main()
