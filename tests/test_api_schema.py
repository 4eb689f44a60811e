"""Property tests of the HTTP API's whole OpenAPI schema (schemathesis) against a live server.

A real uvicorn on a loopback port and the real Redis of the test session (no bot needed: writes go
to streams nobody reads here). Every operation gets generated requests, with a token that has every
scope; schemathesis checks that nothing answers 5xx, that every status code, content type, header
and body is the one the schema documents. Bounded (few examples per operation) so it runs in
seconds.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings

from smsbot import config
from smsbot.api.app import start_in_thread

from .conftest import base_config

TOKEN = "schema-secret-01"


@pytest.fixture(scope="module")
def api_schema(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    raw = base_config(redis_server.url, tmp_path_factory.mktemp("api") / "var")
    raw["api"].update({"tokens": [f"all:{TOKEN}:*"], "rate_per_second": 100000, "burst": 100000})
    s = config.from_dict(raw)
    server = start_in_thread(s, "127.0.0.1", 0)
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    server.should_exit = True
    server.thread.join(5)


def named_422(response: Any) -> None:
    """In place of schemathesis' positive_data_acceptance: a schema-valid request may still be refused
    when the number is not one (msisdn has no pattern: people's spellings are taken), the time does
    not parse, the cycle is too far off or a notice's template does not render -- but only with a 422
    naming each wrong field."""
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert detail and all(len(e["loc"]) >= 2 and e["loc"][0] in ("body", "path", "query") and e["msg"] for e in detail), detail


def test_api_schema(api_schema: Any) -> None:
    """Every operation of /openapi.json, each with its own bounded hypothesis run."""
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 11
    for op in ops:
        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                              excluded_checks=[positive_data_acceptance])
            named_422(response)

        check()
