"""Sent messages (MT) and their delivery state: ``smsbot mt show ID``, ``smsbot mt list``."""

from __future__ import annotations

import sys

import click

from smsbot.cli.group import Ctx, main, msisdn_or_exit, open_store, pass_ctx, time_zone


@main.group("mt")
def mt_group() -> None:
    """Sent messages (MT) and their delivery state."""


@mt_group.command("show")
@click.argument("message_id")
@pass_ctx
def mt_show(c: Ctx, message_id: str) -> None:
    """Print the stored state of the MT the SMSC called MESSAGE_ID (x<entry> for rejected ones)."""
    st = open_store(c)
    try:
        records = st.mt_records(message_id)
    finally:
        st.close()
    if not records:
        click.echo(f"no record of message {message_id}", err=True)
        sys.exit(1)
    tz = time_zone(c)
    for i, rec in enumerate(records):
        if len(records) > 1:
            click.echo(f"# {i + 1} of {len(records)} under this id")
        for k in sorted(rec):
            click.echo(f"{k}\t{_time_or_value(rec[k], tz) if k in _MT_TIME_FIELDS else rec[k]}")


_MT_TIME_FIELDS = frozenset({"at", "receipt_at"})


def _time_or_value(value: object, tz: object) -> str:
    from smsbot.timefmt import fmt_ms

    try:
        return fmt_ms(int(str(value)), tz)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)


@mt_group.command("list")
@click.option("--state", default=None, help="only MTs in this state, e.g. REJECTED, ENROUTE, DELIVRD, UNDELIV (any case)")
@click.option("--msisdn", "msisdn", default=None, help="only MTs to this subscriber")
@click.option("--limit", type=click.IntRange(1, 100000), default=20, show_default=True, help="the most recent N")
@pass_ctx
def mt_list(c: Ctx, state: str | None, msisdn: str | None, limit: int) -> None:
    """Recent MT records, newest first: time, id (for `mt show`), state, to, template, part, status.

    Rejected MTs are always recorded (id x<entry>); sent parts only when records are kept
    (dispatch.mt_records: always, or auto with smsc.registered_delivery: 1). Scans the MT keys
    (SCAN): meant for testers and ops, not for millions of records.
    """
    number = msisdn_or_exit(msisdn, "--msisdn") if msisdn is not None else None
    want = state.strip().upper() if state else None
    st = open_store(c)
    try:
        rows = _mt_rows(st)
    finally:
        st.close()
    rows = [r for r in rows if (want is None or str(r.get("state", "")).upper() == want)
            and (number is None or r.get("to") == number)]
    if not rows:
        click.echo("no MT records" + (f" in state {want}" if want else "") + (f" to {number}" if number else ""))
        return
    rows.sort(key=lambda r: int(r.get("at", 0) or 0), reverse=True)
    tz = time_zone(c)
    for r in rows[:limit]:
        part = f"{r.get('part', '1')}/{r.get('parts', '1')}"
        status = r.get("status") or r.get("err") or ""
        click.echo("\t".join([_time_or_value(r.get("at", ""), tz), r["_id"], str(r.get("state", "?")), str(r.get("to", "?")),
                              str(r.get("tpl", "")), part, str(status)]))
    if len(rows) > limit:
        click.echo(f"({len(rows) - limit} older not shown; --limit N)", err=True)


def _mt_rows(st: "object") -> list[dict[str, str]]:
    """Every MT record under the key prefix: sent parts (one list per message id) and rejected MTs."""
    import json

    redis = st.redis  # type: ignore[attr-defined]
    prefix = f"{st.keys.prefix}:mt:"  # type: ignore[attr-defined]
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis.scan_iter(match=prefix + "{*", count=1000)]
    keys = [k for k in keys if not k.endswith(":dlr")]
    rows: list[dict[str, str]] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        pipe = redis.pipeline(transaction=False)
        for k in chunk:
            if k.endswith(":rejected"):
                pipe.get(k)
            else:
                pipe.lrange(k, 0, -1)
        for k, got in zip(chunk, pipe.execute(raise_on_error=False)):
            if got is None or isinstance(got, Exception):
                continue
            mid = k[len(prefix) + 1:].split("}", 1)[0]
            for raw in (got if isinstance(got, list) else [got]):
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    rows.append({**{str(a): str(b) for a, b in rec.items()}, "_id": mid})
    return rows
