"""The checks of a request that need the configuration (number, service code, time), for the core
endpoints and the ones command packages bring: each wrong field is collected in an `Invalid` and
answered as one 422 naming every one, in the shape FastAPI uses for schema errors
(``{"detail": [{"loc": ["body", "<field>"], "msg": "...", "type": "value_error"}]}``)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from smsbot.api.schema import MAX_AT_MS
from smsbot.config import Settings
from smsbot.msisdn import normalize_msisdn
from smsbot.periods import parse_time, zone


class Invalid(Exception):
    """Collects the wrong fields of one request; raised as a 422."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, where: str, field: str, msg: str) -> None:
        self.errors.append({"loc": [where, field], "msg": msg, "type": "value_error"})

    def check(self) -> None:
        if self.errors:
            raise HTTPException(422, self.errors)


def number(settings: Settings, bad: Invalid, where: str, value: str) -> str:
    """The subscriber key of `value` ('' and the field noted in `bad` when it is no number)."""
    try:
        return normalize_msisdn(value, settings.subscribers.country_code)
    except ValueError as e:
        bad.add(where, "msisdn", str(e))
        return ""


def path_number(settings: Settings, value: str) -> str:
    """The subscriber key of the path's ``{msisdn}``, or a 422."""
    bad = Invalid()
    n = number(settings, bad, "path", value)
    bad.check()
    return n


def at_ms(settings: Settings, bad: Invalid, value: str | int | None) -> int:
    """`at` as epoch ms (now when absent); a number is in range already (`smsbot.api.schema.Time`)."""
    try:
        ms = parse_time(None if value is None else str(value), zone(settings.billing.timezone))
    except (ValueError, OverflowError) as e:
        bad.add("body", "at", str(e))
        return 0
    if not 0 <= ms <= MAX_AT_MS:
        bad.add("body", "at", f"{value!r} is out of range: a time between 1970 and 3000")
        return 0
    return ms


def service(settings: Settings, bad: Invalid, code: str, where: str = "body", field: str = "service") -> str:
    """A service code of the catalogue (any case), or the field noted in `bad`."""
    code = code.strip().upper()
    if settings.service(code) is None:
        known = ", ".join(s.code for s in settings.services)
        bad.add(where, field, f"unknown service code {code!r}; known: {known}")
    return code
