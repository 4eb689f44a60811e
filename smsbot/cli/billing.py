"""Billing: ``smsbot billing run|runs|ledger|verify``, talking to Redis directly. (``smsbot order``
and ``smsbot use``, which write the events billing charges, are the orders package's:
`commands.orders.cli`.)"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from smsbot.cli.group import at_or_exit, fmt_time, main, msisdn_or_exit, open_store, pass_ctx

EXIT_DISCREPANCIES = 1


@main.group("billing")
def billing_group() -> None:
    """Billing runs, the ledger and its verification."""


@billing_group.command("run")
@click.option("--at", "at", default=None, help="the run's time, ISO 8601; it bills the period (month) holding it; default now")
@click.option("--batch", type=int, default=None, help="subscribers per round trip (default billing.batch)")
@click.option("--fresh", is_flag=True, help="start a new run even if an unfinished run of the period could be resumed")
@click.option("--lease-seconds", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="a run killed without a word is resumable this long after its last sign of life")
@pass_ctx
def billing_run(c: Any, at: str | None, batch: int | None, fresh: bool, lease_seconds: float) -> None:
    """Charge every subscription due for the period, exactly once; print a summary.

    A run killed halfway (kill -9, a crash, Redis gone) is resumed by the next `billing run` for
    its period once its lease has expired (--lease-seconds after its last sign of life; at once if
    it was stopped with SIGTERM/Ctrl-C): same run, same time, from where it stopped. Nothing is
    ever charged twice. `smsbot billing runs` lists the runs and their states.
    """
    import signal

    from smsbot import billing

    at_ms = at_or_exit(c, at)
    st = open_store(c)
    st.load_scripts()
    bar = None
    tty = sys.stderr.isatty()
    stop_signals = 0

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop_signals
        stop_signals += 1
        if stop_signals > 1:
            raise KeyboardInterrupt  # a second signal: stop at once (recorded as interrupted)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def on_start(br: Any) -> None:
        if br.summary.resumed_from is not None:
            click.echo(f"resuming billing run {br.run_id} (at {fmt_time(br.at_ms, c)}; {br.summary.resumed_from} of "
                       f"{br.total} subscribers billed before it stopped)", err=True)
            if at is not None and br.at_ms != at_ms:
                click.echo(f"note: the resumed run keeps its own time; run `billing run --at {at}` again afterwards "
                           "to bill at that time", err=True)
        for rec in billing.list_runs(st):
            if rec.state == "running" and rec.id != br.run_id and rec.period == br.period.label:
                click.echo(f"note: run {rec.id} of {rec.period} is in progress ({rec.raw.get('owner', '?')}); this run "
                           "overlaps it, which is safe: nothing is charged twice", err=True)

    def on_total(n: int) -> None:
        nonlocal bar
        if tty:
            bar = click.progressbar(length=n, label="billing", file=sys.stderr, show_pos=True)
            bar.__enter__()

    def progress(k: int) -> None:
        if bar is not None:
            bar.update(k)

    def close_bar() -> None:
        if bar is not None:
            bar.__exit__(None, None, None)

    try:
        summary = billing.run(c.settings, st, at_ms, batch=batch, progress=progress, on_total=on_total,
                              resume=not fresh, lease_s=lease_seconds, should_stop=lambda: stop_signals > 0,
                              on_start=on_start)
    except (billing.BillingInterrupted, billing.BillingStopped) as e:
        close_bar()
        for line in e.summary.lines():
            click.echo(line)
        click.echo(str(e), err=True)
        sys.exit(1)
    except billing.LeaseLost as e:
        close_bar()
        click.echo(f"smsbot: {e} (this process stalled longer than its lease); that process finishes the run", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        close_bar()
        click.echo("stopped; `smsbot billing run` resumes the run (nothing is charged twice)", err=True)
        sys.exit(130)
    finally:
        st.close()
    close_bar()
    click.echo(f"at {fmt_time(summary.at_ms, c)}")
    for line in summary.lines():
        click.echo(line)
    if summary.errors:
        sys.exit(1)


@billing_group.command("runs")
@click.option("--period", default=None, metavar="YYYY-MM", help="only the runs of this period")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_ctx
def billing_runs(c: Any, period: str | None, as_json: bool) -> None:
    """Billing runs, oldest first: id, period, state, time, progress, charged, started, finished.

    States: running (its process is alive), abandoned (killed: the next `billing run` of its period
    resumes it), interrupted (stopped; resumed by the next run at once), finished, superseded (a
    later run of the period covered it).
    """
    from smsbot import billing

    st = open_store(c)
    try:
        runs = [r for r in billing.list_runs(st) if period is None or r.period == period]
    finally:
        st.close()
    if not runs:
        click.echo("no billing runs" + (f" for {period}" if period else ""))
        return
    for r in runs:
        raw = r.raw
        if as_json:
            click.echo(json.dumps({"id": r.id, "period": r.period, "state": r.state, "at": r.at, "started": r.started,
                                   "finished": r.finished, "subscribers": raw.get("subscribers"), "total": r.total,
                                   "charged": raw.get("charged"), "amount_fen": raw.get("amount_fen"),
                                   "resumed": r.resumed, "owner": raw.get("owner"),
                                   "superseded_by": raw.get("superseded_by")}, ensure_ascii=False))
            continue
        done = raw.get("subscribers", 0)
        progress = f"{done}/{r.total}" if r.total and r.state != "finished" else f"{done}"
        extra = []
        if r.resumed:
            extra.append(f"resumed {r.resumed}x")
        if raw.get("superseded_by"):
            extra.append(f"by {raw['superseded_by']}")
        if r.state == "running" and raw.get("owner"):
            extra.append(str(raw["owner"]))
        click.echo("\t".join([
            r.id, r.period, r.state, fmt_time(r.at, c), progress, f"{raw.get('charged', 0)} charged",
            f"started {fmt_time(r.started, c)}" if r.started else "-",
            f"finished {fmt_time(r.finished, c)}" if r.finished else "-",
        ] + ([", ".join(extra)] if extra else [])))


@billing_group.command("ledger")
@click.argument("msisdn")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_ctx
def billing_ledger(c: Any, msisdn: str, as_json: bool) -> None:
    """MSISDN's charges: time, service, period or use id, amount, run."""
    from smsbot import billing

    number = msisdn_or_exit(msisdn)
    st = open_store(c)
    try:
        charges = billing.ledger(st, number)
    finally:
        st.close()
    if not charges:
        click.echo(f"{number}: no charges")
        return
    for ch in charges:
        if as_json:
            click.echo(json.dumps({"field": ch.field, "service": ch.code, "period": ch.period, "use": ch.use,
                                   "fen": ch.fen, "at": ch.at_ms, "run": ch.run}, ensure_ascii=False))
        else:
            what = ch.period if ch.period is not None else f"use {ch.use}"
            click.echo(f"{fmt_time(ch.at_ms, c)}\t{ch.code}\t{what}\t{ch.fen / 100:.2f}\t{ch.run}")
    if not as_json:
        click.echo(f"total\t{sum(ch.fen for ch in charges) / 100:.2f} yuan, {len(charges)} charge(s)")


@billing_group.command("verify")
@pass_ctx
def billing_verify(c: Any) -> None:
    """Check the ledger against the audit stream; print every discrepancy; exit 1 if any."""
    from smsbot import billing

    st = open_store(c)
    try:
        rep = billing.verify(c.settings, st)
    finally:
        st.close()
    for line in rep.discrepancies:
        click.echo(line)
    tail = f"{rep.charges} charge(s), {rep.subscriptions} subscription(s), {rep.runs} finished run(s), {rep.uses} use event(s) checked"
    if rep.discrepancies:
        click.echo(f"{len(rep.discrepancies)} discrepancy(ies); {tail}", err=True)
        sys.exit(EXIT_DISCREPANCIES)
    click.echo(f"ledger OK: no discrepancies; {tail}")
