"""Issue 19 (items 3, 4, 9 and the schema) and issue 20 (the event loop), through a real `smsbot api`
process on the test Redis (no bot: what is queued stays queued):

3. a notice is followed by its own subscriber only: another subscriber's notice id, or an id that
   never existed, is 404;
4. an order_id or use_id used again for another request is 409 naming what differs, nothing
   written; the same request again stays 200 ``duplicate: true``;
9. every answer of every operation is a documented model, errors included, and the bearer scheme
   is declared;
20. the async handlers never block the event loop: while Redis holds their write, the API answers
   other requests (that none calls the blocking client at all: tests/test_api_loop.py).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import pytest
import redis

from smsbot import config
from smsbot.keys import Keys

from .api_client import OPS, RO, ApiProcess, Reply, write_settings
from .conftest import base_config

A, B = "13800138000", "13800138001"


@pytest.fixture(scope="module")
def env(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiProcess, config.Settings]]:
    tmp = tmp_path_factory.mktemp("api-contract")
    settings = config.from_dict(base_config(redis_server.url, tmp / "var"))
    proc = ApiProcess(write_settings(settings, tmp / "config.yaml"), tmp / "api.log",
                      env={"SMSBOT_API_TOKENS": f"ops:{OPS}:*,ro:{RO}:read"})
    yield proc, settings
    proc.stop()


@pytest.fixture(scope="module")
def api(env: tuple[ApiProcess, config.Settings]) -> ApiProcess:
    return env[0]


def post(api: ApiProcess, path: str, body: dict[str, Any]) -> Reply:
    return api.send("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})


def same_shard_as(number: str, settings: config.Settings) -> str:
    keys = Keys(settings.redis.key_prefix, settings.redis.shards)
    return next(n for n in (f"139{i:08d}" for i in range(1000)) if keys.shard(n) == keys.shard(number))


# -- 3. a notice is its own subscriber's ------------------------------------------------------------
def test_a_notice_is_followed_by_its_own_subscriber_only(env: tuple[ApiProcess, config.Settings]) -> None:
    api, settings = env
    neighbour = same_shard_as(A, settings)  # same queue stream as A: today's code found A's entry for it
    posted = post(api, "/v1/notices", {"msisdn": A, "text": "系统维护通知"})
    assert posted.status == 202, posted
    nid = posted.json["id"]
    mine = api.send("GET", posted.json["href"], token=RO)
    assert mine.status == 200 and mine.json == {"id": nid, "msisdn": A, "state": "queued", "record": None}, mine
    for other in (B, neighbour):
        r = api.send("GET", f"/v1/subscribers/{other}/notices/{nid}", token=RO)
        assert r.status == 404 and r.json["detail"].startswith(f"no notice {nid} for {other}"), (other, r)
    never = f"{int(nid.split('-')[0]) - 1}-0"  # a well-formed id no notice ever had
    for msisdn, notice_id in ((A, never), (A, "1-0"), (A, f"{nid.split('-')[0]}-7")):
        r = api.send("GET", f"/v1/subscribers/{msisdn}/notices/{notice_id}", token=RO)
        assert r.status == 404, (notice_id, r)
    assert api.send("GET", f"/v1/subscribers/{A}/notices/garbage", token=RO).status == 422
    api.assert_clean_log()


# -- 4. an id used again for another request ---------------------------------------------------------
def stream_length(settings: config.Settings, stream: str) -> int:
    r = redis.Redis.from_url(settings.redis.url)
    try:
        return r.xlen(stream)
    finally:
        r.close()


def test_an_order_id_used_again_for_another_order_is_409(env: tuple[ApiProcess, config.Settings]) -> None:
    api, settings = env
    stream = Keys(settings.redis.key_prefix, settings.redis.shards).order_events()
    first = post(api, "/v1/orders", {"msisdn": A, "service": "MUSIC", "order_id": "INT-0001"})
    assert first.status == 202, first
    for same in ({"msisdn": A, "service": "MUSIC", "order_id": "INT-0001"},
                 {"msisdn": "+86 138-0013-8000", "service": "music", "order_id": "INT-0001"}):  # the same order, spelt otherwise
        again = post(api, "/v1/orders", same)
        assert again.status == 200 and again.json == {**first.json, "duplicate": True}, again
    conflicts = {
        "service": ({"msisdn": A, "service": "GAME", "order_id": "INT-0001"}, "service 'MUSIC' then, 'GAME' now"),
        "msisdn": ({"msisdn": B, "service": "MUSIC", "order_id": "INT-0001"}, f"msisdn '{A}' then, '{B}' now"),
        "at": ({"msisdn": A, "service": "MUSIC", "order_id": "INT-0001", "at": 1}, "at "),
    }
    for name, (body, says) in conflicts.items():
        r = post(api, "/v1/orders", body)
        assert r.status == 409 and r.headers["content-type"] == "application/json", (name, r)
        assert "order_id 'INT-0001' was used before for another request" in r.json["detail"] and says in r.json["detail"], (name, r.json)
        assert r.json["first"] == {**first.json, "duplicate": True}, r.json
    assert stream_length(settings, stream) == 1  # the conflicts wrote nothing

    uses = Keys(settings.redis.key_prefix, settings.redis.shards).use_events()
    assert post(api, "/v1/uses", {"msisdn": A, "service": "RING", "use_id": "U-9", "at": 1796000000000}).status == 202
    assert post(api, "/v1/uses", {"msisdn": A, "service": "RING", "use_id": "U-9", "at": 1796000000000}).status == 200
    assert post(api, "/v1/uses", {"msisdn": A, "service": "RING", "use_id": "U-9"}).status == 200  # `at` not stated: not compared
    r = post(api, "/v1/uses", {"msisdn": B, "service": "RING", "use_id": "U-9"})
    assert r.status == 409 and "use_id 'U-9'" in r.json["detail"] and r.json["first"]["msisdn"] == A, r
    assert stream_length(settings, uses) == 1
    api.assert_clean_log()


# -- 9. every answer documented ---------------------------------------------------------------------
def test_every_answer_is_a_documented_model(api: ApiProcess) -> None:
    doc = api.send("GET", "/openapi.json", token=None).json
    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer",
                                                               "description": doc["components"]["securitySchemes"]["bearer"]["description"]}}
    assert "HTTPValidationError" not in schemas  # FastAPI's default 422 is replaced everywhere by ours
    ops = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(ops) >= 14
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        codes = set(op["responses"])
        if path != "/status":
            assert op["security"] == [{"bearer": []}], where
            assert {"401", "403", "429", "503"} <= codes, where
        if "requestBody" in op:
            assert list(op["requestBody"]["content"]) == ["application/json"], where
            assert {"413", "415", "422"} <= codes, where
        if op.get("parameters"):
            assert "422" in codes, where
        for code, answer in op["responses"].items():
            if (path, code) == ("/status", "200"):
                assert list(answer["content"]) == ["text/html"]
                continue
            ref = answer["content"]["application/json"]["schema"].get("$ref", "")
            assert ref.startswith("#/components/schemas/"), (where, code, answer)
            model = schemas[ref.rsplit("/", 1)[1]]
            assert model["type"] == "object" and model["properties"], (where, code)
            if code in ("401", "403", "404", "413", "415", "429", "503"):
                assert ref.endswith("/Problem") and model["properties"]["detail"]["type"] == "string", (where, code)
            if code == "422":
                assert ref.endswith("/ValidationProblem"), (where, code)
    for path in ("/v1/orders", "/v1/uses"):
        assert doc["paths"][path]["post"]["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Conflict")
    usage = schemas["UsageStateOut"]["properties"]
    assert usage["used"]["type"] == "integer" and usage["thresholds"] == {**usage["thresholds"], "type": "array", "items": {"type": "integer"}}
    assert not any(k.startswith("alerted:") or k in ("mo", "ths", "state") for k in usage)


# -- 20. the event loop is never blocked ------------------------------------------------------------
class HeldWrites:
    """Redis holding every write (CLIENT PAUSE WRITE) until released: a handler that writes waits
    in Redis, and whether the API still answers other requests shows whether it waits on its loop."""

    def __init__(self, settings: config.Settings):
        self.r = redis.Redis.from_url(settings.redis.url)

    def __enter__(self) -> HeldWrites:
        self.r.execute_command("CLIENT", "PAUSE", 30000, "WRITE")
        return self

    def wait_held(self, command: str) -> None:
        deadline = time.monotonic() + 10
        while not any("b" in c["flags"] and c["cmd"] == command for c in self.r.client_list()):
            assert time.monotonic() < deadline, f"no {command} held by Redis"
            time.sleep(0.02)

    def __exit__(self, *exc: Any) -> None:
        self.r.execute_command("CLIENT", "UNPAUSE")
        self.r.close()


@pytest.mark.parametrize("path,body,command", [
    ("/v1/usage", {"msisdn": A, "used": "95MB"}, "xadd"),
    ("/v1/notices", {"msisdn": A, "text": "系统维护通知"}, "evalsha"),
    ("/v1/orders", {"msisdn": A, "service": "NEWS"}, "evalsha"),
])
def test_a_write_waiting_on_redis_blocks_no_other_request(env: tuple[ApiProcess, config.Settings], path: str, body: dict[str, Any],
                                                         command: str) -> None:
    api, settings = env
    answers: list[Reply] = []
    with HeldWrites(settings) as held:
        writer = threading.Thread(target=lambda: answers.append(post(api, path, body)))
        writer.start()
        held.wait_held(command)
        # the write is held in Redis; a blocking call would hold the loop with it (until the API's
        # 5 s Redis timeout): this answer would then not come within the socket's timeout
        api_timeout = 4.0
        started = time.monotonic()
        r = api.send("GET", "/openapi.json", token=None)
        assert r.status == 200 and time.monotonic() - started < api_timeout
        assert writer.is_alive() and not answers  # still held
    writer.join(10)
    assert answers and answers[0].status == 202, answers
    api.assert_clean_log()


class Collected:
    """A log sink for `smsbot.api.wire` (its `_log`): the events it writes."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.events.append((level, event, kw))


def test_a_bug_is_a_json_500_and_one_log_line(env: tuple[ApiProcess, config.Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception no handler takes (a bug in an operation) is answered, as JSON, and logged once
    with its traceback; the server goes on serving."""
    from smsbot.api import wire

    from .api_client import start_api

    logged = Collected()
    monkeypatch.setattr(wire, "_log", logged)
    api = start_api(env[1])
    try:
        def broken() -> None:
            raise RuntimeError("a bug")

        api.server.config.app.add_api_route("/v1/broken", broken)
        r = api.send("GET", "/v1/broken")
        assert r.status == 500 and r.headers["content-type"] == "application/json" and r.raw.endswith(b"}\n"), r
        assert "api_request_failed" in r.json["detail"]
        assert logged.events == [("error", "api_request_failed", {"method": "GET", "path": "/v1/broken",
                                                                  "error": "RuntimeError('a bug')", "exc_info": True})]
        assert api.send("GET", "/v1/status", token=RO).status == 200
    finally:
        api.stop()
