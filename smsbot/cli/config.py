"""`smsbot config check`: validate the configuration and say what it sets up."""

from __future__ import annotations

import click

from smsbot import config as config_mod
from smsbot.cli.group import Ctx, main, pass_ctx


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""

@config_group.command("check")
@pass_ctx
def config_check(c: Ctx) -> None:
    """Validate the configuration; print every error with its key (exit 2 when invalid)."""
    from smsbot import redis_supervisor

    s = c.settings  # loading checks everything, the templates included (exit 2 naming each problem)
    redis_supervisor.check_url(s)  # a URL every other command would refuse: the same line, exit 2
    click.echo(f"smsbot: {c.where()}", err=True)
    click.echo(
        f"configuration OK: {len(s.short_codes)} short code(s) "
        f"({', '.join(sc.code for sc in s.short_codes)}), {len(s.services)} service(s), "
        f"SMSC {s.smsc.host}:{s.smsc.port}, redis {s.redis.mode.value}: {'bundled in ' + str(s.data_dir) if s.redis.mode.value == 'single' and not s.redis.url else 'external'}"
    )
    for key, note in config_mod.notes(s):  # the deprecated names the registry's checks accepted
        click.echo(f"note: {key}: {note}")
