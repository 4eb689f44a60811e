"""The HTTP API's common vocabulary, for core endpoints and the ones command packages bring
(`commands/<name>/api.py`): `Input` (a request body: unknown fields refused, no lone surrogate, no
non-finite number), the fields several bodies share (`MSISDN`, `Time` and `TimedInput` for an
event's ``at``), the error bodies (`Problem`, `ValidationProblem`), and `responses`, which
documents an operation's error answers by status code. The core endpoints' own models are
`smsbot.api.models`; the checks that need the configuration are `smsbot.api.checks`."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_AT_MS = 32503680000000  # year 3000: epoch ms beyond this are a unit mistake (seconds as ms * 1000...)


def plain_value(value: Any) -> Any:
    """`value` (any JSON) unchanged, or ValueError naming a lone surrogate or a non-finite number in it."""
    stack = [value]
    while stack:  # a loop, not recursion: a deeply nested value must not exhaust the stack
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii() and (bad := _SURROGATE.search(v)):
                raise ValueError(f"holds a lone surrogate ({ascii(bad.group())[1:-1]}), which is no character: "
                                 "send text as UTF-8 (a character outside the BMP as a surrogate pair)")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"must be a finite number, not {v!r} (JSON has no NaN or Infinity)")
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return value


class Input(BaseModel):
    """A request body: unknown fields refused, no lone surrogate, no non-finite number."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        return plain_value(value)


def _time_ms(value: Any) -> Any:
    """`at` as epoch ms: whole and in range, or ValueError; strings are parsed by the route (time zone)."""
    plain_value(value)  # this runs before `Input._plain`: NaN and surrogates named first
    if isinstance(value, bool):
        raise ValueError("not a time: give ISO 8601 text or epoch ms")
    if isinstance(value, float):
        if value != int(value):
            raise ValueError("epoch ms must be a whole number")
        value = int(value)
    if isinstance(value, int) and not 0 <= value <= MAX_AT_MS:
        raise ValueError(f"{value} is out of range: epoch ms between 0 (1970) and {MAX_AT_MS} (3000)")
    return value


MSISDN = Field(min_length=1, max_length=40, description="the subscriber, as people write it: 13800138000, +86 138-0013-8000, 8613800138000",
               examples=["13800138000"])
EpochMs = Annotated[int, Field(strict=True, ge=0, le=MAX_AT_MS, description="ms since the epoch")]
Time = Annotated[EpochMs | Annotated[str, Field(min_length=1, max_length=40)] | None,
                 Field(description="ISO 8601 (no offset: billing.timezone) or ms since the epoch; default now",
                       examples=["2026-11-25T10:00:00+08:00"])]


class TimedInput(Input):
    """A request body with an event time ``at`` (`Time`): epoch ms checked here, text by the route."""

    @field_validator("at", mode="before", check_fields=False)
    @classmethod
    def _at(cls, value: Any) -> Any:
        return _time_ms(value)


# -- errors -----------------------------------------------------------------------------------------
class Problem(BaseModel):
    """An error answer: what is wrong, in words."""

    detail: str = Field(description="what is wrong and how to put it right")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, path or query, then the field (and the key or index in it)")
    msg: str = Field(description="what is wrong with it")
    type: str = Field(description="the kind of error (value_error, missing, json_invalid, ...)")
    input: str | int | float | bool | None = Field(None, description="the value given, when it is short and plain "
                                                                     "(what cannot be echoed is escaped: \\ud800)")


class ValidationProblem(BaseModel):
    """A request refused for its content: every wrong field named."""

    detail: list[FieldError]


_ANSWERS: dict[int, tuple[type[BaseModel], str]] = {
    401: (Problem, "no or an invalid bearer token (WWW-Authenticate: Bearer)"),
    403: (Problem, "the token lacks the scope"),
    404: (Problem, "not found"),
    409: (Problem, "conflicts with the stored state: nothing was written"),
    413: (Problem, "the body is over api.max_body_bytes"),
    415: (Problem, "the body is not JSON (Content-Type: application/json)"),
    422: (ValidationProblem, "invalid input: each wrong field named in detail[].loc"),
    429: (Problem, "the token's rate limit is exceeded (Retry-After)"),
    503: (Problem, "Redis is unreachable (Retry-After); nothing was written"),
}
AUTH = (401, 403, 429, 503)  # every operation that takes a token
BODY = (413, 415, 422)  # every operation that takes a JSON body


def responses(*codes: int | tuple[Any, ...]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of an operation: each status in `codes` (ints or tuples such as AUTH) with its
    model and description; ``responses(AUTH, (404, "no such ticket"))`` overrides a description."""
    out: dict[int | str, dict[str, Any]] = {}
    for c in codes:
        if isinstance(c, tuple) and len(c) == 2 and isinstance(c[1], str):
            model, _default = _ANSWERS[c[0]]
            out[c[0]] = {"model": model, "description": c[1]}
            continue
        for code in (c if isinstance(c, tuple) else (c,)):
            model, description = _ANSWERS[code]
            out.setdefault(code, {"model": model, "description": description})
    return out
