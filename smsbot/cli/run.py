"""The bot as a process: ``smsbot run`` (foreground or ``--daemon``), ``smsbot stop``, ``smsbot status``
(by pidfile; `smsbot.daemon` does the work).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from smsbot import config as config_mod
from smsbot import log
from smsbot.cli.group import BadInput, Ctx, main, pass_ctx, time_zone
from smsbot.private import open_private


@main.command("run")
@click.option("--daemon", "detach", is_flag=True, help="detach from the terminal (needs --pidfile)")
@click.option("--pidfile", type=click.Path(dir_okay=False, path_type=Path), envvar="SMSBOT_PIDFILE", default=None,
              help="hold this pidfile; a second copy on it is refused")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where the JSON logs go (with --daemon default <data_dir>/smsbot.log; without it, stderr)")
@pass_ctx
def run(c: Ctx, detach: bool, pidfile: Path | None, log_file: Path | None) -> None:
    """Run the bot until SIGTERM/SIGINT (drain, unbind; a second signal stops at once). SIGHUP reloads."""
    from smsbot import daemon, ports

    if detach and pidfile is None:
        raise BadInput("--daemon needs --pidfile (see `smsbot run --help`)")
    # --daemon changes to /: relative paths are taken from here, now; their directories must exist
    pidfile = _in_existing_dir(pidfile, "--pidfile")
    log_file = _in_existing_dir(log_file, "--log-file")
    s = c.settings
    if s.metrics.port:  # say it now, not after waiting for Redis (and before detaching)
        ports.check([ports.metrics_listener(s.metrics.host, s.metrics.port)])
    if s.api.port:  # the HTTP API this run starts (smsbot.api)
        ports.check([ports.Listener(s.api.host, s.api.port, "the HTTP API", "api.port", "SMSBOT_API_PORT", "",
                                    "another `smsbot run` or `smsbot api`? each needs its own api.port")])
    try:
        if detach:
            assert pidfile is not None
            if log_file is None:
                s.data_dir.mkdir(parents=True, exist_ok=True)
            code = daemon.run_detached(s, c.config_path or config_mod.default_config_path(), pidfile,
                                       log_file or s.data_dir / "smsbot.log")
        else:
            if log_file is not None:
                click.echo(f"smsbot: logs in {log_file}", err=True)
                log.setup(s.log, stream=open_private(log_file), zone=time_zone(c))
            else:
                log.setup(s.log, zone=time_zone(c))
            log.get("smsbot.bot").info("config_in_use", where=c.where())
            code = daemon.run_foreground(s, c.config_path or config_mod.default_config_path(), pidfile)
    except daemon.AlreadyRunning as e:
        click.echo(str(e), err=True)
        code = daemon.EXIT_ALREADY_RUNNING
    sys.exit(code)


def _in_existing_dir(path: Path | None, option: str) -> Path | None:
    """`path` made absolute, or a usage error (exit 2) when its directory does not exist or cannot
    be written: smsbot creates no directory for a path it was given (a typo would create one)."""
    if path is None:
        return None
    path = path.absolute()
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise BadInput(f"{option} {path}: {parent} {what}; create it first or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {path}: {parent} is not writable by this user; choose another path")
    return path


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
@pass_ctx
def status_cmd(c: Ctx, pidfile: Path) -> None:
    """Is the bot holding PIDFILE running? Exit 0 when running, 3 when not (LSB). When it runs, the
    Redis it uses: primaries, replicas and their lag, failovers seen."""
    from smsbot import daemon, topology

    code, text = daemon.status(pidfile)
    click.echo(text)
    if code == 0:  # the topology is extra: a configuration it cannot read does not change the LSB answer
        try:
            settings = c.settings
        except Exception as e:  # noqa: BLE001 - ConfigError, unreadable file: said in one line
            click.echo(f"redis: topology not readable: {str(e).splitlines()[0] if str(e) else repr(e)}")
        else:
            click.echo("\n".join(topology.read_lines(settings)))
    sys.exit(code)
