"""The HTTP API's common vocabulary, for core endpoints and the ones command packages bring
(`commands/<name>/api.py`): `Input` (a request body: unknown fields refused, no lone surrogate, no
non-finite number), the error bodies (`Problem`, `ValidationProblem`), and `responses`, which
documents an operation's error answers by status code. The endpoints' own models are
`smsbot.api.models`."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SURROGATE = re.compile("[\ud800-\udfff]")


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
