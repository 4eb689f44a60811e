"""The `smsbot` command line: one click group; each subcommand is thin and calls into the modules.

Global options also read the environment (``SMSBOT_CONFIG``, ``SMSBOT_LOG_LEVEL``). Every command
loads and validates the configuration first and refuses to start on an invalid one, printing
each offending key (exit code 2), never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from smsbot import config as config_mod
from smsbot import log
from smsbot.msisdn import normalize_msisdn

EXIT_CONFIG = 2


class Ctx:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._settings: config_mod.Settings | None = None

    @property
    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            try:
                self._settings = config_mod.load(self.config_path)
            except config_mod.ConfigError as e:
                click.echo(str(e), err=True)
                sys.exit(EXIT_CONFIG)
        return self._settings


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SMSBOT_CLI"})
@click.option("--config", "config_path", envvar="SMSBOT_CONFIG", type=click.Path(dir_okay=False), default=None,
              help="config file (default ./config.yaml); env SMSBOT_CONFIG")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """smsbot: SMS short-code command processor (0000 menus and cancel) over SMPP 3.4 with Redis state."""
    ctx.obj = Ctx(config_path)


# -- config ---------------------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@pass_ctx
def config_check(c: Ctx) -> None:
    """Validate the configuration; print every error with its key (exit 2 when invalid)."""
    s = c.settings
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
    from smsbot import daemon

    s = c.settings
    try:
        if detach:
            if pidfile is None:
                raise click.UsageError("--daemon needs --pidfile")
            code = daemon.run_detached(s, c.config_path or config_mod.default_config_path(), pidfile,
                                       log_file or s.data_dir / "smsbot.log")
        else:
            log.setup(s.log)
            code = daemon.run_foreground(s, c.config_path or config_mod.default_config_path(), pidfile)
    except daemon.AlreadyRunning as e:
        click.echo(str(e), err=True)
        code = daemon.EXIT_ALREADY_RUNNING
    sys.exit(code)


@main.command("stop")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), envvar="SMSBOT_PIDFILE", required=True)
@click.option("--timeout", type=float, default=30.0, show_default=True)
def stop_cmd(pidfile: Path, timeout: float) -> None:
    """Stop the bot holding PIDFILE (SIGTERM: drain and unbind) and wait for it to exit."""
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
    for i, rec in enumerate(records):
        if len(records) > 1:
            click.echo(f"# {i + 1} of {len(records)} under this id")
        for k in sorted(rec):
            click.echo(f"{k}\t{rec[k]}")


# -- simulator and handsets ---------------------------------------------------------------------
@main.command("smsc")
@pass_ctx
def smsc(c: Ctx) -> None:
    """Run the simulated SMSC (SMPP on simulator.smpp_port, handset API on simulator.control_port)."""
    from smsbot.simulator.smsc import SimSmsc

    s = c.settings
    log.setup(s.log)
    sim = SimSmsc.from_settings(s)
    sim.serve_forever()


@main.command("handset")
@click.argument("msisdn")
@click.option("--to", "to", default=None, help="short code (default: the first configured)")
@click.option("--send", "send", default=None, help="text to send; omit to only collect")
@click.option("--wait", "wait", type=float, default=3.0, show_default=True, help="seconds to wait for messages")
@click.option("--control", "control", default=None, help="simulator control URL (default from config)")
@pass_ctx
def handset(c: Ctx, msisdn: str, to: str | None, send: str | None, wait: float, control: str | None) -> None:
    """A handset on the simulator: send one MO and print every message for MSISDN (or a prompt)."""
    from smsbot.simulator.handset import run_handset

    s = c.settings
    number = _msisdn_or_exit(msisdn)
    url = control or f"http://{s.simulator.host}:{s.simulator.control_port}"
    sys.exit(run_handset(url, number, to or s.short_codes[0].code, send, wait))


@main.command("demo")
@click.option("--msisdn", default="13800138000", show_default=True, help="the demo subscriber")
@click.option("--send", "sends", multiple=True, help="send these texts in order instead of opening the prompt")
@click.option("--wait", type=float, default=3.0, show_default=True, help="seconds to wait for each reply")
@pass_ctx
def demo(c: Ctx, msisdn: str, sends: tuple[str, ...], wait: float) -> None:
    """Start bundled Redis, the simulated SMSC and the bot, seed a subscriber, open a handset prompt."""
    from smsbot import demo as demo_mod

    sys.exit(demo_mod.run(c.settings, _msisdn_or_exit(msisdn), list(sends), wait))


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

    number = _msisdn_or_exit(msisdn)
    rows = admin.list_subscriptions(c.settings, number, include_cancelled=show_all)
    if not rows:
        click.echo(f"{number}: no subscriptions")
    for r in rows:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.since_ms / 1000))
        click.echo(f"{r.code}\t{r.state}\t{r.price_fen / 100:.2f}\t{since}\t{r.name}")


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
    """The bundled redis-server (used when redis.url is empty): start, stop, status."""


def _bundled_or_exit(c: Ctx) -> None:
    r = c.settings.redis
    if r.mode.value != "single" or r.url:
        click.echo(f"smsbot: redis.url (or redis.mode {r.mode.value}) is set: smsbot uses that Redis, not a bundled one", err=True)
        sys.exit(EXIT_CONFIG)


@redis_group.command("start")
@pass_ctx
def redis_start(c: Ctx) -> None:
    """Start the bundled redis-server for data_dir (or find it running); print its URL."""
    from smsbot import embedded, redis_supervisor

    _bundled_or_exit(c)
    try:
        er = embedded.ensure_running(c.settings.data_dir, c.settings.redis.appendfsync)
    except redis_supervisor.CONNECT_ERRORS as e:
        raise redis_supervisor.diagnose(c.settings, e) from None
    click.echo(er.url)


@redis_group.command("stop")
@click.option("--force", is_flag=True, help="stop it even while bots use it (they then wait for `smsbot redis start`)")
@pass_ctx
def redis_stop(c: Ctx, force: bool) -> None:
    """Stop the bundled redis-server (AOF flushed). Refused while running bots use it, unless --force.

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


@redis_group.command("status")
@pass_ctx
def redis_status(c: Ctx) -> None:
    """Is the bundled redis-server for data_dir running? Exit 0 running, 3 not (LSB)."""
    from smsbot import embedded

    _bundled_or_exit(c)
    er = embedded.layout(c.settings.data_dir)
    pid = embedded.server_pid(er)
    if embedded.answers(er):
        users = embedded.bots(c.settings.data_dir)
        click.echo(f"running (pid {pid}) on {er.url}, data in {er.directory}; bots: {', '.join(users) or 'none'}")
        return
    why = "stopped with `smsbot redis stop`" if er.stop_marker.exists() else "not running"
    click.echo(f"{why}; data in {er.directory}" + (f" (pid {pid} lives but does not answer)" if pid else ""))
    sys.exit(3)


def _msisdn_or_exit(value: str) -> str:
    try:
        return normalize_msisdn(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="MSISDN") from None


def _service_or_exit(c: Ctx, code: str) -> str:
    code = code.strip().upper()
    if c.settings.service(code) is None:
        known = ", ".join(s.code for s in c.settings.services)
        raise click.BadParameter(f"unknown service code {code!r}; known: {known}", param_hint="SERVICE_CODE")
    return code


from smsbot import cli_usage  # noqa: E402,F401  (registers `smsbot usage`)
from smsbot import cli_billing  # noqa: E402,F401  (registers `smsbot order`, `smsbot use`, `smsbot billing`)

if __name__ == "__main__":  # pragma: no cover
    main()
