"""Issue 19, the HTTP API's answers to wrong requests, through a real `smsbot api` process and its log.

1. a lone surrogate (``"\\ud800"``) in any JSON string of any endpoint gets a clean 422 naming the
   field (a body that encodes as UTF-8), as does every other validation error (NaN, 1e400, a
   5000-digit number, bytes that are not UTF-8, nesting too deep to parse); never a 500, never a
   traceback in the log;
10. a body that is not JSON gets 415 saying the API takes application/json; every body over
   ``api.max_body_bytes`` gets 413, chunked ones without Content-Length too; numbers no client
   means (negative, absurdly large, non-finite) get 422, with the bounds stated in the schema;
15. every JSON body ends with a newline (curl output does not run together).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from smsbot import config

from .api_client import CARE, OPS, ApiProcess, Reply, write_settings
from .conftest import base_config

MSISDN = "13800138000"
LIMIT = 16384  # api.max_body_bytes of config.yaml
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def api(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("api-errors")
    settings = config.from_dict(base_config(redis_server.url, tmp / "var"))
    assert settings.api.max_body_bytes == LIMIT
    proc = ApiProcess(write_settings(settings, tmp / "config.yaml"), tmp / "api.log",
                      env={"SMSBOT_API_TOKENS": f"ops:{OPS}:*,care:{CARE}:admin+read"})
    yield proc
    proc.stop()


def post(api: ApiProcess, path: str, raw: bytes, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
    return api.send("POST", path, raw, JSON if headers is None else headers, **kw)


def assert_named_422(r: Reply, loc: list[Any], *words: str) -> dict[str, Any]:
    """A 422 whose body is strict UTF-8 JSON ending in a newline, naming `loc` with each of `words`."""
    assert r.status == 422, r
    assert r.headers["content-type"] == "application/json", r
    text = r.raw.decode("utf-8")  # strict: what cannot be echoed is escaped, not sent as a broken byte sequence
    assert text.endswith("}\n"), r
    detail = json.loads(text)["detail"]
    hits = [e for e in detail if e["loc"][:len(loc)] == loc]
    assert hits, (loc, detail)
    for w in words:
        assert any(w in e["msg"] for e in hits), (w, hits)
    return hits[0]


SURROGATE = "\\ud800"  # as it is written in the JSON text: a lone high surrogate, no character
LONE_SURROGATES = [
    ("/v1/orders", '{"msisdn": "%s", "service": "VIDEO"}', ["body", "msisdn"]),
    ("/v1/orders", '{"msisdn": "13800138000", "service": "%s"}', ["body", "service"]),
    ("/v1/orders", '{"msisdn": "13800138000", "service": "VIDEO", "order_id": "A-%s"}', ["body", "order_id"]),
    ("/v1/orders", '{"msisdn": "13800138000", "service": "VIDEO", "at": "2026-11-%s"}', ["body", "at"]),
    ("/v1/uses", '{"msisdn": "13800138000", "service": "RING", "use_id": "%s"}', ["body", "use_id"]),
    ("/v1/uses", '{"msisdn": "1380013800%s", "service": "RING"}', ["body", "msisdn"]),
    ("/v1/usage", '{"msisdn": "13800138000", "used": "95MB%s"}', ["body", "used"]),
    ("/v1/usage", '{"msisdn": "13800138000", "used": 1, "cycle": "%s"}', ["body", "cycle"]),
    ("/v1/usage", '{"msisdn": "13800138000", "used": 1, "plan": "4G%s"}', ["body", "plan"]),
    ("/v1/notices", '{"msisdn": "13800138000", "text": "maintenance %s tonight"}', ["body", "text"]),
    ("/v1/notices", '{"msisdn": "13800138000", "template": "%s"}', ["body", "template"]),
    ("/v1/notices", '{"msisdn": "13800138000", "template": "usage.alert", "params": {"left": "%s"}}', ["body", "params"]),
    ("/v1/notices", '{"msisdn": "13800138000", "template": "usage.alert", "params": {"%s": "1"}}', ["body", "params"]),
    ("/v1/notices", '{"msisdn": "13800138000", "text": "hi", "short_code": "%s"}', ["body", "short_code"]),
    ("/v1/tickets/T-1/resolve", '{"reply": "%s"}', ["body", "reply"]),
]


@pytest.mark.parametrize("path,template,loc", LONE_SURROGATES, ids=[f"{p}:{'.'.join(map(str, loc[1:]))}" for p, _, loc in LONE_SURROGATES])
def test_a_lone_surrogate_gets_a_clean_422(api: ApiProcess, path: str, template: str, loc: list[str]) -> None:
    r = post(api, path, (template % SURROGATE).encode())
    e = assert_named_422(r, loc, "surrogate")
    assert "\\ud800" in e["msg"] or "\\ud800" in json.dumps(e.get("input")), e  # what was wrong, shown escaped
    api.assert_clean_log()


def test_a_surrogate_pair_is_a_character(api: ApiProcess) -> None:
    """``\\ud83d\\ude00`` is one character (😀), not an error."""
    r = post(api, "/v1/notices", b'{"msisdn": "13800138000", "text": "ok \\ud83d\\ude00"}')
    assert r.status == 202 and r.json["text"] == "ok 😀", r
    api.assert_clean_log()


UNREADABLE = [
    ("NaN", b'{"msisdn": "13800138000", "used": NaN}', ["body", "used"], "finite"),
    ("Infinity", b'{"msisdn": "13800138000", "used": -Infinity}', ["body", "used"], "finite"),
    ("1e400", b'{"msisdn": "13800138000", "used": 1e400}', ["body", "used"], "finite"),
    ("at NaN", b'{"msisdn": "13800138000", "service": "VIDEO", "at": NaN}', ["body", "at"], "finite"),
    ("param NaN", b'{"msisdn": "13800138000", "template": "usage.alert", "params": {"left": NaN}}', ["body", "params"], "finite"),
    ("5000 digits", b'{"msisdn": "13800138000", "used": ' + b"9" * 5000 + b"}", ["body"], "digits"),
    ("not UTF-8", b'{"msisdn": "\xff\xfe13800138000", "used": 1}', ["body"], "UTF-8"),
    ("too deep", b"[" * 5000 + b"]" * 5000, ["body"], "deep"),
    ("not JSON", b'{"msisdn": ', ["body"], "JSON"),
]


@pytest.mark.parametrize("name,raw,loc,word", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_every_validation_error_is_a_clean_422(api: ApiProcess, name: str, raw: bytes, loc: list[str], word: str) -> None:
    path = "/v1/orders" if b'"service"' in raw else "/v1/notices" if b"params" in raw else "/v1/usage"
    assert_named_422(post(api, path, raw), loc, word)
    api.assert_clean_log()


NUMBERS = [
    ("/v1/usage", {"msisdn": MSISDN, "used": -1}, "used"),
    ("/v1/usage", {"msisdn": MSISDN, "used": 70 * 1024 ** 4}, "used"),  # 70 TB: more than any cycle
    ("/v1/usage", {"msisdn": MSISDN, "used": 1.5}, "used"),
    ("/v1/usage", {"msisdn": MSISDN, "used": True}, "used"),
    ("/v1/usage", {"msisdn": MSISDN, "used": "-5MB"}, "used"),
    ("/v1/usage", {"msisdn": MSISDN, "used": 1, "at": -1}, "at"),
    ("/v1/orders", {"msisdn": MSISDN, "service": "VIDEO", "at": -1}, "at"),
    ("/v1/orders", {"msisdn": MSISDN, "service": "VIDEO", "at": 10 ** 17}, "at"),
    ("/v1/uses", {"msisdn": MSISDN, "service": "RING", "at": 2 ** 64}, "at"),
    ("/v1/notices", {"msisdn": MSISDN, "template": "usage.alert", "params": {"left": 1e300}}, "params"),
]


@pytest.mark.parametrize("path,body,field", NUMBERS, ids=[f"{p}:{f}={b[f]!r}"[:60] for p, b, f in NUMBERS])
def test_numbers_no_client_means_are_refused(api: ApiProcess, path: str, body: dict[str, Any], field: str) -> None:
    r = post(api, path, json.dumps(body).encode())
    assert_named_422(r, ["body", field])
    api.assert_clean_log()


def test_numeric_bounds_are_stated_in_the_schema(api: ApiProcess) -> None:
    schemas = api.send("GET", "/openapi.json", token=None).json["components"]["schemas"]

    def integer_branch(model: str, prop: str) -> dict[str, Any]:
        spec = schemas[model]["properties"][prop]
        return next(s for s in spec.get("anyOf", [spec]) if s.get("type") == "integer")

    used = integer_branch("UsageIn", "used")
    assert used["minimum"] == 0 and used["maximum"] == 64 * 1024 ** 4, used
    for model in ("OrderIn", "UseIn", "UsageIn"):
        at = integer_branch(model, "at")
        assert at["minimum"] == 0 and at["maximum"] < 10 ** 14, (model, at)
    params = schemas["NoticeIn"]["properties"]["params"]["additionalProperties"]
    number = next(s for s in params["anyOf"] if s.get("type") == "number")
    assert number["maximum"] == 1e15 and number["minimum"] == -1e15, number


NOT_JSON = [
    ("text/plain", b'{"msisdn": "13800138000", "service": "VIDEO"}'),
    ("application/x-www-form-urlencoded", b"msisdn=13800138000&service=VIDEO"),
    ("multipart/form-data; boundary=xx", b'--xx\r\nContent-Disposition: form-data; name="msisdn"\r\n\r\n1\r\n--xx--\r\n'),
    ("application/xml", b"<order/>"),
    (None, b'{"msisdn": "13800138000", "service": "VIDEO"}'),
]


@pytest.mark.parametrize("content_type,raw", NOT_JSON, ids=[str(c).split(";")[0] for c, _ in NOT_JSON])
def test_a_body_that_is_not_json_gets_415(api: ApiProcess, content_type: str | None, raw: bytes) -> None:
    r = post(api, "/v1/orders", raw, {} if content_type is None else {"Content-Type": content_type})
    assert r.status == 415 and r.headers["content-type"] == "application/json", r
    detail = r.json["detail"]
    assert "application/json" in detail and (content_type or "no Content-Type").split(";")[0] in detail, detail
    api.assert_clean_log()


def test_json_content_types_are_taken(api: ApiProcess) -> None:
    for ct in ("application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"):
        r = post(api, "/v1/orders", json.dumps({"msisdn": MSISDN, "service": "VIDEO"}).encode(), {"Content-Type": ct})
        assert r.status == 202, (ct, r)
    r = post(api, "/v1/orders", b"", {})  # no body at all: the body is what is missing, not its type
    assert_named_422(r, ["body"])


def padded_order(size: int) -> bytes:
    """A valid order of exactly `size` bytes (JSON whitespace pads it)."""
    head = json.dumps({"msisdn": MSISDN, "service": "NEWS"}).encode()[:-1]
    return head + b" " * (size - len(head) - 1) + b"}"


def test_every_body_over_the_limit_gets_413(api: ApiProcess) -> None:
    at_limit = padded_order(LIMIT)
    assert len(at_limit) == LIMIT
    assert post(api, "/v1/orders", at_limit).status == 202
    assert post(api, "/v1/orders", None, chunks=[at_limit[:5000], at_limit[5000:]]).status == 202
    over = padded_order(LIMIT + 1)
    cases = {
        "Content-Length": post(api, "/v1/orders", over),
        "chunked": post(api, "/v1/orders", None, chunks=[over[i:i + 4000] for i in range(0, len(over), 4000)]),
        "one chunk": post(api, "/v1/notices", None, chunks=[b"x" * (LIMIT * 4)]),
        "no token": post(api, "/v1/uses", over, token=None),
    }
    for name, r in cases.items():
        assert r.status == 413 and r.headers["content-type"] == "application/json", (name, r)
        assert str(LIMIT) in r.json["detail"] and "api.max_body_bytes" in r.json["detail"], (name, r.json)
        assert r.raw.endswith(b"\n"), (name, r)
    # a chunked body of the wrong type is refused for its type before it is read
    r = post(api, "/v1/usage", None, {"Content-Type": "text/plain"}, chunks=[b"y" * (LIMIT + 1)])
    assert r.status == 415, r
    api.assert_clean_log()


def test_every_json_body_ends_with_a_newline(api: ApiProcess) -> None:
    order = json.dumps({"msisdn": MSISDN, "service": "VIDEO", "order_id": "NL-1"}).encode()
    answers = {
        "202": post(api, "/v1/orders", order),
        "200 duplicate": post(api, "/v1/orders", order),
        "401": post(api, "/v1/orders", order, token=None),
        "403": post(api, "/v1/orders", order, token=CARE),
        "404": api.send("GET", "/v1/tickets/T-none"),
        "404 route": api.send("GET", "/v1/nothing-here"),
        "405": api.send("PUT", "/v1/orders", order, JSON),
        "415": post(api, "/v1/orders", order, {"Content-Type": "text/plain"}),
        "422": post(api, "/v1/orders", b"{}"),
        "status": api.send("GET", "/v1/status"),
        "subscriptions": api.send("GET", f"/v1/subscribers/{MSISDN}/subscriptions"),
        "openapi": api.send("GET", "/openapi.json", token=None),
    }
    for name, r in answers.items():
        assert r.headers["content-type"] == "application/json", (name, r)
        assert r.raw.endswith(b"}\n") and r.raw.count(b"\n") == 1, (name, r)
        assert int(r.headers["content-length"]) == len(r.raw), (name, r)
        assert r.json is not None, (name, r)
    api.assert_clean_log()
