"""``smsbot order`` and ``smsbot use``: write an order or an on-demand use event for the bot.

    smsbot order MSISDN SERVICE_CODE [--at TIME] [--order-id ID]
    smsbot use MSISDN SERVICE_CODE [--at TIME] [--use-id ID]

Each only writes an event to the stream the bot consumes (`commands.orders.events.write_order`,
`write_use`), refusing bad numbers, unknown service codes and times before writing anything.
Added to ``smsbot`` through `OrdersCommand.cli_commands`; `cli` is `smsbot.cli.group`.
"""

from __future__ import annotations

from typing import Any

import click

from smsbot.config import BillingKind

from commands.orders.events import new_id, reminder_short_code, write_order, write_use


def build_commands(cli: Any) -> list[click.Command]:
    @click.command("order")
    @click.argument("msisdn")
    @click.argument("service_code")
    @click.option("--at", "at", default=None, help="order time, ISO 8601 (e.g. 2026-12-01T00:00:00+08:00); default now")
    @click.option("--order-id", default=None, help="the order's id (idempotency key); default a new unique id")
    @cli.pass_ctx
    def order_cmd(c: Any, msisdn: str, service_code: str, at: str | None, order_id: str | None) -> None:
        """Place an order: write an order event for the bot (reminder, grace period, first charge)."""
        number = cli.msisdn_or_exit(msisdn)
        code = cli.service_or_exit(c, service_code)
        at_ms = cli.at_or_exit(c, at)
        if order_id is not None and not (0 < len(order_id.strip()) <= 128):
            raise click.BadParameter("must be 1 to 128 characters", param_hint="--order-id")
        if reminder_short_code(c.settings) is None:
            raise click.UsageError("no short code enables the `orders` command: nothing would send the reminder")
        oid = (order_id or new_id("ord")).strip()
        st = cli.open_store(c)
        try:
            eid = write_order(c.settings, st.redis, number, code, at_ms, oid)
        finally:
            st.close()
        click.echo(f"order {oid}: {number} {code} at {cli.fmt_time(at_ms, c)} queued as event {eid}")

    @click.command("use")
    @click.argument("msisdn")
    @click.argument("service_code")
    @click.option("--at", "at", default=None, help="time of use, ISO 8601; default now")
    @click.option("--use-id", default=None, help="the use's id (idempotency key); default a new unique id")
    @cli.pass_ctx
    def use_cmd(c: Any, msisdn: str, service_code: str, at: str | None, use_id: str | None) -> None:
        """Record one use of an on-demand service (charged once, if subscribed and past the grace)."""
        number = cli.msisdn_or_exit(msisdn)
        code = cli.service_or_exit(c, service_code)
        svc = c.settings.service(code)
        if svc is None or svc.kind is not BillingKind.ON_DEMAND:
            on_demand = ", ".join(s.code for s in c.settings.services if s.kind is BillingKind.ON_DEMAND) or "none"
            raise click.BadParameter(f"{code} is not an on-demand service; on-demand: {on_demand}", param_hint="SERVICE_CODE")
        at_ms = cli.at_or_exit(c, at)
        uid = (use_id or new_id("use")).strip()
        st = cli.open_store(c)
        try:
            eid = write_use(c.settings, st.redis, number, code, at_ms, uid)
        finally:
            st.close()
        click.echo(f"use {uid}: {number} {code} at {cli.fmt_time(at_ms, c)} queued as event {eid}")

    return [order_cmd, use_cmd]
