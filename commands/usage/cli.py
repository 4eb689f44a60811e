"""`smsbot usage`: write a data-usage report to the usage stream (testers, ops), or show the state.

    smsbot usage 13800138000 --used 95MB [--plan 4G_1GB] [--cycle 2026-11]
    smsbot usage 13800138000                       # what is stored for this cycle

The report is one XADD to ``<prefix>:events:usage``, exactly what the billing side sends (see
``commands/usage``); a running bot applies it and sends any alert. Sizes: ``95MB``, ``95.5MB``,
``1GB``, ``1024KB``, ``123456B``, ``0`` with binary units (1 MB = 1024 * 1024 bytes). A bad size,
cycle or number, or an unknown plan, is refused (exit 2) and nothing is written. So is a cycle far
from this month (`commands.usage.check_cycle_near`: more than ``CYCLE_PAST_MONTHS`` back or
``CYCLE_AHEAD_MONTHS`` ahead) unless ``--force``: a report for a future cycle makes the stored state
ignore every real report until that cycle comes (a typo such as 2030-01 for 2026-01 would silence
the subscriber's alerts for years). Added to ``smsbot`` through `UsageCommand.cli_commands`; `cli` is
`smsbot.cli.group`.
"""

from __future__ import annotations

import os
from typing import Any

import click

from commands.usage import reports as usage_cmd


def build_commands(cli: Any) -> list[click.Command]:
    @click.command("usage")
    @click.argument("msisdn")
    @click.option("--used", "used", default=None, metavar="SIZE", help="data used this cycle so far (running total), e.g. 95MB, 1.5GB")
    @click.option("--plan", "plan", default=None, help="plan code (default: the stored plan, else usage.default_plan)")
    @click.option("--cycle", "cycle", default=None, metavar="YYYY-MM", help="billing cycle (default: this month in usage.timezone)")
    @click.option("--force", is_flag=True, help=f"accept a --cycle more than {usage_cmd.CYCLE_PAST_MONTHS} months back or "
                                                f"{usage_cmd.CYCLE_AHEAD_MONTHS} ahead of this month")
    @cli.pass_ctx
    def usage(c: Any, msisdn: str, used: str | None, plan: str | None, cycle: str | None, force: bool) -> None:
        """Report MSISDN's data usage (--used) for a running bot to apply, or show what is stored."""
        settings = c.settings
        number = cli.msisdn_or_exit(msisdn)
        if used is None:
            if plan or cycle:
                raise click.UsageError("--plan and --cycle go with --used")
            _show(cli, c, number)
            return
        try:
            used_bytes = usage_cmd.parse_size(used)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--used") from None
        now_cycle = usage_cmd.current_cycle(settings)
        cycle = (cycle or now_cycle).strip()
        if not usage_cmd.CYCLE_RE.match(cycle):
            raise click.BadParameter(f"{cycle!r} is not a cycle; use YYYY-MM, e.g. 2026-11", param_hint="--cycle")
        if not force:
            try:
                usage_cmd.check_cycle_near(cycle, now_cycle)
            except ValueError as e:
                raise click.BadParameter(f"{e}, or pass --force if you mean it", param_hint="--cycle") from None
        if plan is not None:
            try:
                the_plan = usage_cmd.resolve_plan(settings, plan)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--plan") from None
        else:
            the_plan = None

        store = cli.open_store(c)
        try:
            if the_plan is None:
                stored = _state(store, number)
                try:
                    the_plan = usage_cmd.resolve_plan(settings, stored.get("plan"))
                except ValueError as e:
                    raise click.BadParameter(str(e), param_hint="--plan") from None
            fields = usage_cmd.event_fields(number, used_bytes, cycle, the_plan.code, source=f"cli:{os.environ.get('USER', 'unknown')}")
            entry_id = store.redis.xadd(store.keys.usage_events(), fields)
        finally:
            store.close()
        quota = the_plan.quota_mb * usage_cmd.MB
        click.echo(
            f"{number}: reported {usage_cmd.mb(used_bytes)}MB used of {the_plan.code} ({the_plan.quota_mb}MB, "
            f"{usage_cmd.mb(max(quota - used_bytes, 0), 'ROUND_DOWN')}MB left) in cycle {cycle}; "
            f"event {entry_id.decode()} (a running bot applies it)"
        )

    return [usage]


def _state(store: Any, msisdn: str) -> dict[str, str]:
    raw = store.redis.hgetall(store.keys.usage(msisdn))
    return {k.decode(): v.decode() for k, v in raw.items()}


def _show(cli: Any, c: Any, msisdn: str) -> None:
    store = cli.open_store(c)
    try:
        st = _state(store, msisdn)
    finally:
        store.close()
    if not st:
        click.echo(f"{msisdn}: no usage on record")
        return
    used, quota = int(st.get("used", 0)), int(st.get("quota", 0))
    marks = sorted((int(k.rsplit(":", 1)[1]) for k in st if k.startswith("alerted:")), reverse=True)
    at = cli.fmt_time(int(st.get("at", 0) or 0), c)
    click.echo(
        f"{msisdn}: cycle {st.get('cycle')} plan {st.get('plan')} used {usage_cmd.mb(used)}MB "
        f"left {usage_cmd.mb(max(quota - used, 0), 'ROUND_DOWN')}MB of {quota // usage_cmd.MB}MB; "
        f"alerted at {', '.join(usage_cmd.mb(t) + 'MB' for t in marks) or 'none'} left; "
        f"last report {at} (event {st.get('mo', '')})"
    )
