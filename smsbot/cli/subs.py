"""The service catalogue and subscriptions to it: ``smsbot catalog list``, ``smsbot subs add|remove|list|seed``
(`smsbot.admin`, which writes the audit stream).
"""

from __future__ import annotations

import click

from smsbot.cli.group import Ctx, main, msisdn_or_exit, pass_ctx, service_or_exit, time_zone


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

    number = msisdn_or_exit(msisdn)
    code = service_or_exit(c, service_code)
    outcome = admin.subscribe(c.settings, number, code)
    click.echo(f"{number} {code}: {outcome}")


@subs.command("remove")
@click.argument("msisdn")
@click.argument("service_code")
@pass_ctx
def subs_remove(c: Ctx, msisdn: str, service_code: str) -> None:
    """Cancel MSISDN's subscription to SERVICE_CODE."""
    from smsbot import admin

    number = msisdn_or_exit(msisdn)
    code = service_or_exit(c, service_code)
    click.echo(f"{number} {code}: {admin.unsubscribe(c.settings, number, code)}")


@subs.command("list")
@click.argument("msisdn")
@click.option("--all", "show_all", is_flag=True, help="include cancelled subscriptions")
@pass_ctx
def subs_list(c: Ctx, msisdn: str, show_all: bool) -> None:
    """MSISDN's subscriptions, in menu order: code, state, price, since, name."""
    from smsbot import admin

    from smsbot.timefmt import fmt_ms

    number = msisdn_or_exit(msisdn)
    rows = admin.list_subscriptions(c.settings, number, include_cancelled=show_all)
    if not rows:
        click.echo(f"{number}: no subscriptions")
    tz = time_zone(c)
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

    start = msisdn_or_exit(first)
    codes = [service_or_exit(c, x.strip()) for x in services.split(",") if x.strip()]
    n = admin.seed(c.settings, start, count, codes)
    click.echo(f"seeded {n} subscriptions for {count} subscribers")
