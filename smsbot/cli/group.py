"""The `smsbot` click group and what its subcommand modules share: `Ctx` (the configuration a
command runs with), `pass_ctx`, the exit code of a bad configuration, one-line usage errors, and the
argument helpers (`msisdn_or_exit`, `service_or_exit`, `at_or_exit`, `time_zone`, `fmt_time`,
`open_store`). Each subcommand module of `smsbot.cli` imports `main` from here and registers on it;
a command package's commands (`Command.cli_commands`) get this module as their toolkit instead of
importing it. Each command is thin and calls into the modules. Importing it loads the command registry (`commands`), whose
configuration checks (command names, each command's settings, deprecated names) then apply to
every command.

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

import commands  # noqa: F401  (the registry: installs its configuration checks, see smsbot.config.extend)
from smsbot import config as config_mod
from smsbot import log
from smsbot.msisdn import DEFAULT_COUNTRY_CODE, normalize_msisdn

EXIT_CONFIG = 2

# top-level commands that touch state: they say which config file and data they use (`Ctx.announce`)
STATE_COMMANDS = frozenset({"run", "subs", "order", "use", "billing", "usage", "mt", "redis", "webhooks", "ctl"})


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


def msisdn_or_exit(value: str, param_hint: str = "MSISDN") -> str:
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


def service_or_exit(c: Ctx, code: str) -> str:
    code = code.strip().upper()
    if c.settings.service(code) is None:
        known = ", ".join(s.code for s in c.settings.services)
        raise click.BadParameter(f"unknown service code {code!r}; known: {known}", param_hint="SERVICE_CODE")
    return code


def at_or_exit(c: Ctx, value: str | None, param_hint: str = "--at") -> int:
    """`value` (ISO 8601; no offset: billing.timezone) as epoch ms, now when None; or a usage error."""
    from smsbot.periods import parse_time, zone

    try:
        return parse_time(value, zone(c.settings.billing.timezone))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=param_hint) from None


def time_zone(c: Ctx) -> "object":
    """The one zone the CLI prints times in, labelled (billing.timezone; `smsbot.timefmt`)."""
    from smsbot.timefmt import display_zone

    return display_zone(c.settings)


def fmt_time(ms: int, c: Ctx) -> str:
    """A time as every smsbot command prints it: billing.timezone, labelled (`smsbot.timefmt`)."""
    from smsbot.timefmt import fmt_ms

    return fmt_ms(ms, time_zone(c))


def open_store(c: Ctx):  # noqa: ANN201
    """The `smsbot.store.Store` of the configuration (close it when done)."""
    from smsbot.connections import open_store

    return open_store(c.settings)
