"""What crosses the wire around the routes: the request body before a route sees it, and how every
answer is encoded.

* `Gate` (pure ASGI, the outermost layer of the app) reads a request's body whole before routing:
  over ``api.max_body_bytes`` it answers 413, whether Content-Length says so up front or a chunked
  body grows past it; a POST/PUT/PATCH body that is not ``application/json`` (or ``…+json``) gets
  415 saying so. It ends every JSON answer with a newline, gives every HTML page (the docs, /status)
  a Content-Security-Policy that loads nothing from elsewhere, and turns an exception no handler
  took (a bug) into a JSON 500 and one ``api_request_failed`` log line (the traceback a field of
  it), not uvicorn's multi-line traceback on stderr.
* `problem_body` encodes every error answer, ``{"detail": …}``, whatever the client sent: text that
  cannot be UTF-8 (a lone surrogate) is escaped (``\\ud800``), non-finite numbers become text.
* `install_handlers` answers HTTP errors, validation errors (422, each field named; a body that
  does not parse says why) and Redis down (503 with ``Retry-After``) with those bodies;
  `known_query` refuses query parameters an operation does not take (422).
"""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from smsbot import log

RETRY_AFTER_S = 5
JSON_TYPE = b"application/json"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# the pages (docs, ReDoc, /status) load nothing from elsewhere: no CDN, no tracking image
PAGE_POLICY = (b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               b"img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")
_ECHO_MAX = 200  # characters of a wrong value echoed back in a 422 (`input`)
_log = log.get("smsbot.api")


# -- encoding ---------------------------------------------------------------------------------------
def _text(s: str) -> str:
    """`s` as it can be sent: a lone surrogate becomes the six characters ``\\ud800``."""
    return s if s.isascii() else s.encode("utf-8", "backslashreplace").decode("utf-8")


def _plain(value: Any, depth: int = 0) -> Any:
    """`value` made JSON-safe (our own details are shallow; deeper parts are given as text)."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes):
        return _text(value.decode("utf-8", "backslashreplace"))
    if depth < 8 and isinstance(value, dict):
        return {_text(str(k)): _plain(v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    return _text(str(value))


def problem_body(detail: Any, **extra: Any) -> bytes:
    """``{"detail": detail, **extra}`` as UTF-8 JSON, whatever `detail` holds."""
    return json.dumps({"detail": _plain(detail), **_plain(extra)}, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")


def problem(status: int, detail: Any, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return Response(problem_body(detail, **extra), status_code=status, headers=headers, media_type="application/json")


# -- exception handlers -----------------------------------------------------------------------------
def _field_error(e: dict[str, Any]) -> dict[str, Any]:
    """One pydantic/FastAPI error as a `FieldError`: the message without pydantic's "Value error, "
    prefix, a JSON parse error with its reason, the input echoed only when short and plain."""
    msg = str(e.get("msg", ""))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if e.get("type") == "json_invalid":
        msg = f"the body is not valid JSON: {(e.get('ctx') or {}).get('error', 'decode error')} (at character {e['loc'][-1]})"
    out: dict[str, Any] = {"loc": list(e.get("loc", ())), "msg": msg, "type": e.get("type", "value_error")}
    given = e.get("input")
    if isinstance(given, str):
        out["input"] = given if len(given) <= _ECHO_MAX else given[:_ECHO_MAX] + "…"
    elif given is None or isinstance(given, (bool, int, float)):
        if not (isinstance(given, int) and abs(given) > 10 ** 30):
            out["input"] = given
    return out


def _unreadable(cause: BaseException) -> str:
    """Why a body could not be read as JSON (FastAPI answers these 400 "There was an error parsing the body")."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not UTF-8 text (byte {cause.start}: {cause.reason}); send JSON as UTF-8"
    if isinstance(cause, RecursionError):
        return "the body nests too deep to read; send a JSON object of the documented fields"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "a number in the body has too many digits to read (more than 4300)"
    return f"the body does not read as JSON ({type(cause).__name__})"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body
            err = {"loc": ["body"], "msg": _unreadable(exc.__cause__), "type": "json_invalid"}
            return problem(422, [err])
        detail = exc.detail
        if detail == HTTPStatus(exc.status_code).phrase:  # the router's own words: say which endpoint or method
            path = request.url.path
            if exc.status_code == 404:
                detail = f"no endpoint {path}" + (" (no trailing slash)" if path.endswith("/") and path != "/" else "") + \
                         "; the endpoints are listed at /docs and /openapi.json"
            elif exc.status_code == 405:
                detail = f"{request.method} is not an operation of {path}; it takes {(exc.headers or {}).get('Allow', 'none')}"
        return problem(exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Response:
        return problem(422, [_field_error(e) for e in exc.errors()])

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    @app.exception_handler(redis.BusyLoadingError)
    async def redis_down(_request: Request, exc: Exception) -> Response:
        return problem(503, f"Redis is unavailable ({type(exc).__name__}); nothing was written, try again",
                       headers={"Retry-After": str(RETRY_AFTER_S)})


async def known_query(request: Request) -> None:
    """A dependency of every operation: a query parameter it does not take is a 422 naming it (a
    typo such as ``?opne=true`` would otherwise pass silently)."""
    if not request.scope.get("query_string"):
        return
    dependant = getattr(request.scope.get("route"), "dependant", None)
    takes = sorted(f.alias for f in getattr(dependant, "query_params", []))
    unknown = [k for k in dict.fromkeys(request.query_params) if k not in takes]
    if unknown:
        raise HTTPException(422, [{"loc": ["query", k], "type": "extra_forbidden",
                                   "msg": f"unknown query parameter; {request.url.path} takes {', '.join(takes) or 'none'}"}
                                  for k in unknown])


# -- the gate ---------------------------------------------------------------------------------------
def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == JSON_TYPE or (media.startswith(b"application/") and media.endswith(b"+json"))


class _Refused(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


class Gate:
    """Pure ASGI middleware: the body limit (413), JSON only (415), a newline after every JSON
    answer, and a JSON 500 (one log line) for an exception nothing else handled."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        json_answer = False

        async def framed(message: dict) -> None:
            nonlocal started, json_answer
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers") or []
                if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                    message = {**message, "headers": [*headers, (b"content-security-policy", PAGE_POLICY)]}
                elif any(k.lower() == b"content-type" and _is_json(v) for k, v in headers):
                    json_answer = True
                    message = {**message, "headers": [(k, str(int(v) + 1).encode()) if k.lower() == b"content-length" else (k, v)
                                                      for k, v in headers]}
            elif message["type"] == "http.response.body" and json_answer and not message.get("more_body", False):
                message = {**message, "body": message.get("body", b"") + b"\n"}
            await send(message)

        try:
            replay = await self._read(scope, receive)
            await self.app(scope, replay or receive, framed)
        except _Refused as r:
            await problem(r.status, r.detail)(scope, receive, framed)
        except Exception as e:  # noqa: BLE001 - a bug: answered and logged once, the server keeps serving
            _log.error("api_request_failed", method=scope.get("method"), path=_text(scope.get("path", "")),
                       error=_text(repr(e))[:500], exc_info=True)  # one JSON line, the traceback a field of it
            if not started:
                await problem(500, "internal error (logged as api_request_failed); the request may not have been applied")(
                    scope, receive, framed)

    async def _read(self, scope: dict, receive: Any) -> Any:
        """The body read whole and a `receive` that replays it, or None when there is no body."""
        length = content_type = None
        chunked = False
        for k, v in scope["headers"]:
            if k == b"content-length":
                length = v
            elif k == b"content-type":
                content_type = v
            elif k == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:
            return None
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise _Refused(413, self._too_large())
        if scope["method"] in _BODY_METHODS and (length != b"0" or chunked) and not (content_type and _is_json(content_type)):
            got = "no Content-Type was sent" if content_type is None else f"got {_text(content_type.decode('latin-1'))!r}"
            raise _Refused(415, f"the API takes application/json bodies (Content-Type: application/json); {got}")
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return _replay([], receive, message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _Refused(413, self._too_large())
            parts.append(chunk)
            if not message.get("more_body", False):
                return _replay(parts, receive)

    def _too_large(self) -> str:
        return f"the request body is over {self.limit} bytes (api.max_body_bytes); send less per request"


def _replay(parts: list[bytes], receive: Any, last: dict | None = None) -> Any:
    pending = [last or {"type": "http.request", "body": b"".join(parts), "more_body": False}]

    async def replayed() -> dict:
        return pending.pop() if pending else await receive()

    return replayed
