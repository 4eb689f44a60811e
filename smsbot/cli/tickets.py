"""Customer care CLI for complaint tickets: ``smsbot tickets list|show|resolve``.

    smsbot tickets list [--open] [--overdue] [--limit N] [--json]
    smsbot tickets show N [--json]
    smsbot tickets resolve N --reply "..." [--by NAME]

Subscribers open tickets by SMS (``TS <text>`` / ``投诉 <text>``, the ``complaints`` command) and
follow them with ``TSCX``; `resolve` closes one and queues the answer for the subscriber by SMS
(a running bot sends it). See `commands.complaints` and `commands.complaints.tickets`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from smsbot.cli.group import main, open_store, pass_ctx

EXIT_NOT_FOUND = 1


def _fmt(c: Any, ms: int | None) -> str:
    from smsbot.periods import format_time, zone

    from commands.complaints import ComplaintsCommand

    if not ms:
        return "-"
    return format_time(int(ms), zone(ComplaintsCommand().options(c.settings).timezone), "%Y-%m-%d %H:%M")


def _state(t: Any, now_ms: int) -> str:
    return "overdue" if t.overdue(now_ms) else t.state


def _as_json(t: Any) -> str:
    return json.dumps({"id": t.id, "msisdn": t.msisdn, "short_code": t.short_code, "state": t.state, "text": t.text,
                       "cut": t.cut, "opened": t.opened_ms, "due": t.due_ms, "resolved": t.resolved_ms,
                       "answer": t.answer, "by": t.by, "ref": t.ref}, ensure_ascii=False)


@main.group("tickets")
def tickets_group() -> None:
    """Complaint tickets (TS / 投诉 by SMS): list, show, resolve with an answer by SMS."""


@tickets_group.command("list")
@click.option("--open", "open_only", is_flag=True, help="only tickets not yet resolved")
@click.option("--overdue", "overdue_only", is_flag=True, help="only open tickets past their promised answer time")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="newest first, at most this many")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@pass_ctx
def tickets_list(c: Any, open_only: bool, overdue_only: bool, limit: int, as_json: bool) -> None:
    """Tickets, newest first: number, state (open, overdue, resolved), opened, due, MSISDN, text."""
    import time

    from commands.complaints import tickets

    now = int(time.time() * 1000)
    st = open_store(c)
    try:
        found = tickets.list_tickets(c.settings, st, open_only=open_only, overdue_only=overdue_only, limit=limit, now_ms=now)
    finally:
        st.close()
    if not found:
        what = "overdue" if overdue_only else "open" if open_only else ""
        click.echo(f"no {what + ' ' if what else ''}tickets")
        return
    for t in found:
        if as_json:
            click.echo(_as_json(t))
            continue
        text = " ".join(t.text.split())
        click.echo("\t".join([t.id, _state(t, now), _fmt(c, t.opened_ms), _fmt(c, t.due_ms), t.msisdn,
                              text if len(text) <= 40 else text[:39] + "…"]))


@tickets_group.command("show")
@click.argument("number")
@click.option("--json", "as_json", is_flag=True, help="the ticket as one JSON object")
@pass_ctx
def tickets_show(c: Any, number: str, as_json: bool) -> None:
    """Everything about ticket NUMBER: the subscriber's words as typed, times, references, the answer."""
    import time

    from commands.complaints import tickets

    st = open_store(c)
    try:
        t = tickets.get(c.settings, st, number)
    finally:
        st.close()
    if t is None:
        click.echo(f"smsbot: no ticket {number}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    if as_json:
        click.echo(_as_json(t))
        return
    now = int(time.time() * 1000)
    rows = [("ticket", t.id), ("state", _state(t, now)), ("msisdn", t.msisdn), ("short_code", t.short_code),
            ("opened", _fmt(c, t.opened_ms)), ("due", _fmt(c, t.due_ms)), ("text", t.text + (" [cut]" if t.cut else ""))]
    menu = t.ref.get("menu") if isinstance(t.ref.get("menu"), dict) else None
    if menu:
        items = [i.get("code", "?") if isinstance(i, dict) else str(i) for i in menu.get("items") or []]
        rows.append(("last_menu", f"{menu.get('type', '?')}: {', '.join(items) or '-'} (valid until {_fmt(c, menu.get('exp'))})"))
    charge = t.ref.get("charge") if isinstance(t.ref.get("charge"), dict) else None
    if charge:
        rows.append(("last_charge", f"{charge.get('field')} {int(charge.get('fen') or 0) / 100:.2f} yuan at {_fmt(c, charge.get('at'))}"))
    if t.state == "resolved":
        rows += [("resolved", _fmt(c, t.resolved_ms)), ("by", t.by or "-"), ("answer", t.answer or "")]
    for k, v in rows:
        click.echo(f"{k}\t{v}")


@tickets_group.command("resolve")
@click.argument("number")
@click.option("--reply", "answer", required=True, help="the answer; the subscriber receives it by SMS")
@click.option("--by", default=None, help="who answers (recorded and audited); default $USER")
@pass_ctx
def tickets_resolve(c: Any, number: str, answer: str, by: str | None) -> None:
    """Resolve ticket NUMBER: record the answer and send it to the subscriber by SMS (a running bot sends it)."""
    from commands.complaints import tickets

    if not answer.strip():
        raise click.BadParameter("the answer is empty", param_hint="--reply")
    who = (by or os.environ.get("USER") or "care").strip()
    st = open_store(c)
    try:
        st.load_scripts()
        t = tickets.resolve(c.settings, st, number, answer, who)
    except tickets.TicketError as e:
        done = e.ticket
        extra = f" on {_fmt(c, done.resolved_ms)} by {done.by}: {done.answer}" if done is not None and done.resolved_ms else ""
        click.echo(f"smsbot: {e}{extra}; nothing sent", err=True)
        sys.exit(EXIT_NOT_FOUND)
    finally:
        st.close()
    click.echo(f"ticket {t.id} resolved; the answer is queued for {t.msisdn} (a running bot sends it)")
