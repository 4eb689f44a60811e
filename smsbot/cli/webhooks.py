"""Webhook dead letters: ``smsbot webhooks list|retry``.

    smsbot webhooks list [--endpoint NAME] [--limit N] [--json]
    smsbot webhooks retry [--endpoint NAME] (EVENT_ID... | --all)

`list` shows each configured endpoint (events, deliveries waiting, dead letters), then the dead
letters, newest first; `retry` puts dead letters back as fresh deliveries, sent by a running bot.
See `smsbot.webhooks` and the README, "Webhooks".
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from smsbot.cli.group import main, open_store, pass_ctx

EXIT_NOT_FOUND = 1


def _endpoints(c: Any, name: str | None, none_exit: int) -> list[str]:
    """The endpoint names to act on; without any configured: say so and exit `none_exit`."""
    names = [w.name for w in c.settings.webhooks]
    if not names:
        click.echo("smsbot: no webhooks configured (config `webhooks:`, see README: Webhooks)", err=True)
        sys.exit(none_exit)
    if name is None:
        return names
    if name not in names:
        raise click.BadParameter(f"no webhook endpoint {name!r}; configured: {', '.join(names)}", param_hint="--endpoint")
    return [name]


def _jobs(st: Any) -> Any:
    from smsbot.webhooks.jobs import Jobs

    return Jobs(st)


@main.group("webhooks")
def webhooks_group() -> None:
    """Webhook endpoints and their dead letters: list, retry."""


@webhooks_group.command("list")
@click.option("--endpoint", default=None, help="only this endpoint (a name in config `webhooks:`)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="dead letters, newest first, at most this many")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per dead letter and line (with the event as sent)")
@pass_ctx
def webhooks_list(c: Any, endpoint: str | None, limit: int, as_json: bool) -> None:
    """Each endpoint (events, deliveries waiting, dead letters), then the dead letters, newest first."""
    from smsbot.cli.group import time_zone
    from smsbot.timefmt import fmt_ms
    from smsbot.webhooks.jobs import list_dead

    names = _endpoints(c, endpoint, 0)
    st = open_store(c)
    try:
        jobs = _jobs(st)
        counts = {n: jobs.counts(n) for n in names}
        dead = list_dead(jobs, names, limit)
    finally:
        st.close()
    if as_json:
        for d in dead:
            click.echo(json.dumps(d.as_dict(), ensure_ascii=False))
        return
    by_name = {w.name: w for w in c.settings.webhooks}
    for n in names:
        backlog, letters = counts[n]
        click.echo(f"endpoint {n}\tevents {','.join(by_name[n].events)}\twaiting {backlog}\tdead letters {letters}")
    if not dead:
        click.echo("no dead letters")
        return
    zone = time_zone(c)
    for d in dead:
        click.echo("\t".join([fmt_ms(d.dead_at, zone), d.endpoint, d.id, d.type, f"{d.attempts} attempts", d.error]))


@webhooks_group.command("retry")
@click.argument("event_ids", nargs=-1)
@click.option("--endpoint", default=None, help="only this endpoint's dead letters")
@click.option("--all", "everything", is_flag=True, help="every dead letter (of --endpoint, or of all endpoints)")
@pass_ctx
def webhooks_retry(c: Any, event_ids: tuple[str, ...], endpoint: str | None, everything: bool) -> None:
    """Send dead letters again: EVENT_ID... (as `webhooks list` shows them) or --all. A running bot delivers them."""
    from smsbot.webhooks.jobs import replay_dead

    if not event_ids and not everything:
        raise click.UsageError("name the dead letters (EVENT_ID..., see `smsbot webhooks list`) or give --all")
    if event_ids and everything:
        raise click.UsageError("give EVENT_IDs or --all, not both")
    names = _endpoints(c, endpoint, EXIT_NOT_FOUND)
    st = open_store(c)
    try:
        done, missing = replay_dead(_jobs(st), names, list(event_ids) or None, int(time.time() * 1000))
    finally:
        st.close()
    click.echo(f"{len(done)} dead letter(s) queued again for delivery" + (" (a running bot sends them)" if done else ""))
    for i in missing:
        click.echo(f"smsbot: no dead letter {i}" + (f" of endpoint {endpoint}" if endpoint else ""), err=True)
    if missing:
        sys.exit(EXIT_NOT_FOUND)
