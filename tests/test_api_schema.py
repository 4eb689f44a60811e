"""Property tests of the HTTP API's whole OpenAPI schema (schemathesis) against a real `smsbot api`
process on the test Redis (no bot needed: writes go to streams nobody reads here).

Every operation gets generated requests in both of schemathesis' modes (as ``--mode all``):
positive (schema-valid, unicode-heavy text with NUL bytes) and negative (schema-invalid: wrong types,
out-of-range numbers, missing and extra fields, wrong media types), with a token that has every
scope. Each answer is checked by every schemathesis check: no 5xx (``not_a_server_error``), the
status code, content type, headers and body the schema documents, negative data refused with a 4xx,
an operation that needs a token refusing a request without one. The process' log then shows no
traceback and no error. Bounded (a few dozen examples per operation and mode, no shrinking, no
example database) so it runs in seconds.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from smsbot import config

from .api_client import ApiProcess, write_settings
from .conftest import base_config

TOKEN = "schema-secret-01"
EXAMPLES = 20  # per operation and mode
# negative data is refused with a 4xx: schemathesis' list, and 413 (a generated body over api.max_body_bytes)
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


@pytest.fixture(scope="module")
def api(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    tmp = tmp_path_factory.mktemp("api-schema")
    raw = base_config(redis_server.url, tmp / "var")
    raw["api"].update({"rate_per_second": 100000, "burst": 100000})
    proc = ApiProcess(write_settings(config.from_dict(raw), tmp / "config.yaml"), tmp / "api.log",
                      env={"SMSBOT_API_TOKENS": f"all:{TOKEN}:*"})
    yield proc
    proc.stop()


def named_422(response: Any) -> None:
    """In place of schemathesis' positive_data_acceptance: a schema-valid request may still be refused
    when the number is not one (msisdn has no pattern: people's spellings are taken), the time does
    not parse, the cycle is too far off or a notice's template does not render -- but only with a 422
    naming each wrong field."""
    if response.status_code == 422:
        detail = response.json()["detail"]
        assert detail and all(e["loc"] and e["loc"][0] in ("body", "path", "query") and e["msg"] for e in detail), detail


def ends_with_newline(response: Any) -> None:
    assert response.content.endswith(b"\n"), response.content[-80:]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_api_schema(api: ApiProcess, mode: GenerationMode) -> None:
    """Every operation of /openapi.json, each with its own bounded hypothesis run."""
    cfg = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}})
    schema = schemathesis.openapi.from_url(f"{api.base}/openapi.json", config=cfg)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 14
    if mode is GenerationMode.NEGATIVE:  # an operation that takes nothing has no schema-violating input
        ops = [op for op in ops if op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")]
    for op in ops:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  phases=[Phase.explicit, Phase.generate])
        def check(case: Any) -> None:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                              excluded_checks=[positive_data_acceptance])
            named_422(response)
            if response.headers.get("content-type") == "application/json":
                ends_with_newline(response)

        check()
    api.assert_clean_log()
