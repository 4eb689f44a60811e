"""Billing periods (calendar months in a configured time zone) and the times the CLI accepts.

Lua never does calendar arithmetic: Python computes the period of a billing run (label
``YYYY-MM``, start and end in epoch ms) and, for the cancel-by-reply step, the month boundaries
around "now", and passes them as script arguments. Labels sort chronologically as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache

_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@lru_cache(maxsize=32)
def zone(name: str) -> tzinfo:
    """An IANA zone name (``Asia/Shanghai``), ``UTC``, or a fixed offset (``+08:00``)."""
    m = _OFFSET.match(name.strip())
    if m:
        sign = -1 if m.group(1) == "-" else 1
        hours, minutes = int(m.group(2)), int(m.group(3))
        if hours > 14 or minutes > 59:
            raise ValueError(f"bad UTC offset {name!r}")
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    if name.strip().upper() == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError for odd names
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Asia/Shanghai, or +08:00)") from None


@dataclass(frozen=True, slots=True)
class Period:
    label: str  # YYYY-MM
    start_ms: int
    end_ms: int  # exclusive: the next period's start


def _month_start(year: int, month: int, tz: tzinfo) -> int:
    return int(datetime(year, month, 1, tzinfo=tz).timestamp() * 1000)


def _shift(year: int, month: int, by: int) -> tuple[int, int]:
    i = year * 12 + (month - 1) + by
    return i // 12, i % 12 + 1


def period_of(ms: int, tz: tzinfo) -> Period:
    d = datetime.fromtimestamp(ms / 1000, tz)
    ny, nm = _shift(d.year, d.month, 1)
    return Period(f"{d.year:04d}-{d.month:02d}", _month_start(d.year, d.month, tz), _month_start(ny, nm, tz))


def period_by_label(label: str, tz: tzinfo) -> Period:
    y, m = (int(x) for x in label.split("-"))
    ny, nm = _shift(y, m, 1)
    return Period(label, _month_start(y, m, tz), _month_start(ny, nm, tz))


def bounds_around(ms: int, tz: tzinfo, before: int = 1, after: int = 2) -> list[list[object]]:
    """``[[label, start_ms], ...]`` for the months from `before` before to `after` after the one holding `ms`."""
    d = datetime.fromtimestamp(ms / 1000, tz)
    out: list[list[object]] = []
    for k in range(-before, after + 1):
        y, m = _shift(d.year, d.month, k)
        out.append([f"{y:04d}-{m:02d}", _month_start(y, m, tz)])
    return out


def parse_time(text: str | None, tz: tzinfo, now_ms: int | None = None) -> int:
    """ISO 8601 (``2026-12-01T00:00:00+08:00``; without an offset: in `tz`), epoch ms, or None/'now'."""
    import time

    if text is None or text.strip().lower() in ("", "now"):
        return now_ms if now_ms is not None else int(time.time() * 1000)
    t = text.strip()
    if t.isdigit():
        return int(t)
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601 such as 2026-12-01T00:00:00+08:00, or epoch ms)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=tz)
    return int(d.timestamp() * 1000)


def format_time(ms: int, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime(fmt)
