"""A property test of the HTTP API as a hostile or careless client meets it, through a real
`smsbot api` process on the test Redis: every operation of its OpenAPI document (and the methods it
does not take) gets arbitrary requests -- any JSON (lone surrogates, NaN, huge and deep values, the
operation's own field names with any values, a good body with up to two fields changed to anything), bytes that are not JSON or not UTF-8, any
Content-Type or none, bodies from empty to several times ``api.max_body_bytes``, with a
Content-Length or chunked, with a good, a wrong or no token, path parameters of any text.

Never a 5xx; every answer JSON (UTF-8, ending in a newline) but the HTML status page; and the
process' log shows no traceback and no error afterwards. Bounded (a few hundred requests).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from smsbot import config

from .api_client import OPS, ApiProcess, Reply, write_settings
from .conftest import base_config

LIMIT = 16384  # api.max_body_bytes of config.yaml
FIELDS = ["msisdn", "service", "order_id", "use_id", "at", "used", "cycle", "plan", "text", "template", "params", "short_code", "reply"]


@pytest.fixture(scope="module")
def api(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("api-fuzz")
    raw = base_config(redis_server.url, tmp / "var")
    raw["api"].update({"rate_per_second": 100000, "burst": 100000})
    settings = config.from_dict(raw)
    assert settings.api.max_body_bytes == LIMIT
    proc = ApiProcess(write_settings(settings, tmp / "config.yaml"), tmp / "api.log", env={"SMSBOT_API_TOKENS": f"all:{OPS}:*"})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def operations(api: ApiProcess) -> list[tuple[str, str]]:
    doc = api.send("GET", "/openapi.json", token=None).json
    return [(method.upper(), path) for path, item in doc["paths"].items() for method in item]


# -- what a client may send -------------------------------------------------------------------------
texts = st.text(st.characters(exclude_categories=()), max_size=40)  # every code point, lone surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30) | st.floats() | texts
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5), max_leaves=20)
field_objects = st.dictionaries(st.sampled_from(FIELDS) | texts, json_values | texts, max_size=6)  # the operations' own fields


@st.composite
def json_bodies(draw: Any) -> bytes:
    value = draw(st.one_of(field_objects, json_values))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)  # NaN, Infinity as Python writes them
    return text.encode("utf-8", "surrogatepass")  # unescaped lone surrogates: bytes that are not UTF-8


VALID = {  # a good body per operation: "near" bodies change up to two of its fields to anything
    "/v1/orders": {"msisdn": "13800138000", "service": "VIDEO", "order_id": "F-1", "at": "2026-11-25T10:00:00"},
    "/v1/uses": {"msisdn": "13800138000", "service": "RING", "use_id": "F-1", "at": 1796000000000},
    "/v1/usage": {"msisdn": "13800138000", "used": "95MB", "plan": "4G_1GB"},
    "/v1/notices": {"msisdn": "13800138000", "template": "usage.alert", "params": {"left": "9.0"}, "short_code": "10086"},
    "/v1/tickets/{number}/resolve": {"reply": "已处理"},
}


@st.composite
def bodies(draw: Any, path: str) -> bytes | None:
    kind = draw(st.sampled_from(["json", "json", "near", "near", "bytes", "none", "big", "deep"]))
    if kind == "near":
        good = dict(VALID.get(path, {"msisdn": "13800138000"}))
        for name in draw(st.lists(st.sampled_from(sorted(good)), max_size=2)):
            good[name] = draw(json_values)
        return json.dumps(good, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", "surrogatepass")
    if kind == "json":
        return draw(json_bodies())
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "big":  # around and over the limit
        size = draw(st.integers(min_value=LIMIT - 2, max_value=3 * LIMIT))
        head = b'{"msisdn": "13800138000", "text": "'
        return head + b"x" * max(0, size - len(head) - 2) + b'"}'
    if kind == "deep":
        depth = draw(st.integers(min_value=1, max_value=LIMIT // 2))
        return b"[" * depth + b"]" * depth
    return None


content_types = st.one_of(
    st.just("application/json"), st.just("application/json"), st.just("application/json"),  # half of them: past the 415
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "application/problem+json", "text/plain",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "*/*",
                     "application/json; charset=latin-1", "APPLICATION/JSON", ""]),
    # anything an HTTP header value may hold (visible ASCII, space, obs-text; DEL is no HTTP and uvicorn's parser refuses it)
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40),
)
path_texts = st.one_of(st.sampled_from(["13800138000", "+86 138-0013-8000", "VIDEO", "1796105482599-0", "T-1", "x"]),
                       st.text(st.characters(exclude_categories=()), min_size=1, max_size=30))


def fill(path: str, values: list[str]) -> str:
    """The path with each ``{param}`` replaced by arbitrary text, percent-encoded (bytes that are not UTF-8 too)."""
    it = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _m: quote(next(it).encode("utf-8", "surrogatepass"), safe="") or "x", path)


@st.composite
def requests(draw: Any, operations: list[tuple[str, str]]) -> dict[str, Any]:
    method, path = draw(st.sampled_from(operations))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    target = fill(path, [draw(path_texts) for _ in re.findall(r"\{", path)])
    if draw(st.booleans()):
        target += "?" + quote(draw(st.sampled_from(["all", "open", "overdue", "limit", "x"]))) + "=" + quote(
            draw(texts).encode("utf-8", "surrogatepass"), safe="")
    ct = draw(content_types)
    return {"method": method, "path": target, "body": draw(bodies(path)), "headers": {} if ct is None else {"Content-Type": ct},
            "token": draw(st.sampled_from([OPS, OPS, OPS, None, "wrong-token-0001"])), "chunked": draw(st.booleans())}


def answer(api: ApiProcess, req: dict[str, Any]) -> Reply:
    body, chunks = req["body"], None
    if req["chunked"] and body:
        chunks = [body[i:i + 5000] for i in range(0, len(body), 5000)]
        body = None
    return api.send(req["method"], req["path"], body, req["headers"], token=req["token"], chunks=chunks)


def test_no_request_gets_a_5xx(api: ApiProcess, operations: list[tuple[str, str]]) -> None:
    assert len(operations) >= 14
    seen: dict[int, int] = {}

    @given(req=requests(operations))
    @settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    def check(req: dict[str, Any]) -> None:
        r = answer(api, req)
        seen[r.status] = seen.get(r.status, 0) + 1
        assert r.status < 500, (req["method"], req["path"], req["headers"], (req["body"] or b"")[:200], r)
        if r.headers.get("content-type", "").startswith("text/html"):  # GET /status
            return
        assert r.headers.get("content-type") == "application/json", r
        text = r.raw.decode("utf-8")  # strict
        assert text.endswith("\n") and json.loads(text) is not None, r
        if r.status >= 400:
            assert r.json["detail"], r

    check()
    print("answers by status:", dict(sorted(seen.items())))
    # the run reached past each gate: accepted writes and reads, and each kind of refusal
    assert {401, 404, 405, 413, 415, 422} <= set(seen) and {200, 202} & set(seen), seen
    api.assert_clean_log()
