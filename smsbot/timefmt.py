"""How smsbot writes times: in ONE zone, the configured one, always labelled with its offset.

The rule: every time smsbot writes for operators and testers — the CLI (``smsbot subs list``,
``mt show``/``mt list``, ``usage``, ``redis status``), the handsets, the simulator's web page (which
gets the zone from ``GET /web/state``), status pages — and in its log lines is in
``billing.timezone`` (default ``Asia/Shanghai``, the subscribers' zone: billing periods, order
times, charge reminders), with its UTC offset, so that every time can be compared with every
other. People read ``2026-11-25 10:00:00 +08:00`` (`fmt_seconds`, `fmt_ms`); log lines carry ISO
8601 ``2026-11-25T10:00:00.123+08:00`` (`iso_seconds`, used by `smsbot.log`). Times given to
smsbot without an offset are read in that zone too. Replies to subscribers are SMS and give their
local time without an offset, as an operator's SMS does (rendered by the commands).
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from smsbot.periods import zone


def display_zone(settings: Any) -> tzinfo:
    return zone(settings.billing.timezone)


def offset_label(dt: datetime) -> str:
    """'+08:00', '-05:30', '+00:00' (UTC)."""
    off = dt.utcoffset()
    if off is None:
        return ""
    minutes = int(off.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def fmt_seconds(ts: float, tz: tzinfo | None, with_date: bool = True) -> str:
    """Epoch seconds -> '2026-11-25 10:00:00 +08:00' (`tz` None: the host's zone, labelled too)."""
    dt = datetime.fromtimestamp(ts, tz) if tz is not None else datetime.fromtimestamp(ts).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S") + " " + offset_label(dt)


def fmt_ms(ms: int | float | str, tz: tzinfo | None, with_date: bool = True) -> str:
    return fmt_seconds(int(ms) / 1000, tz, with_date)


def iso_seconds(ts: float, tz: tzinfo) -> str:
    """Epoch seconds -> ISO 8601 with milliseconds and the offset: '2026-11-25T10:00:00.123+08:00'."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="milliseconds")
