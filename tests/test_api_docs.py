"""Issue 19 item 2: the API's docs work offline. A real headless Chromium (Debian's chromium and
chromium-driver, as tests/test_web_handsets.py) that can reach nothing but loopback (every host name
resolves to nothing, every other address goes to a closed proxy) opens ``/docs`` of a real
`smsbot api` process: Swagger UI renders from the package's own assets, an operation called without
a token shows 401, the page's Authorize takes the bearer token, the same operation then shows 200
and its answer. ``/redoc`` renders too. The browser's network log shows no request left loopback
(ReDoc's "by Redocly" logo, an image on a CDN, is stopped by the pages' Content-Security-Policy).

Skips, saying so, only when Chromium or its driver is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from smsbot import config

from .api_client import RO, ApiProcess, write_settings
from .browser import LOOPBACK_ONLY, chromium
from .conftest import base_config

@pytest.fixture
def offline_browser(tmp_path: Path) -> Iterator[Any]:
    yield from chromium(tmp_path, window="1280,1400", args=LOOPBACK_ONLY, logs=("browser", "performance"))


@pytest.fixture
def api(redis_server: Any, tmp_path: Path) -> Iterator[ApiProcess]:
    settings = config.from_dict(base_config(redis_server.url, tmp_path / "var"))
    proc = ApiProcess(write_settings(settings, tmp_path / "config.yaml"), tmp_path / "api.log",
                      env={"SMSBOT_API_TOKENS": f"ro:{RO}:read"})
    yield proc
    proc.stop()


def wait(driver: Any, tmp_path: Path, what: str, cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if v := cond():
                return v
        except Exception as e:  # noqa: BLE001 - elements come and go while the page renders
            last = e
        time.sleep(0.1)
    driver.save_screenshot(str(tmp_path / "failure.png"))
    console = [f"{e['level']} {e['message']}" for e in driver.get_log("browser")]
    raise AssertionError(f"waited {timeout}s for {what} (last error {last!r}); screenshot {tmp_path / 'failure.png'}; "
                         f"browser console: {console}")


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for, less those its Content-Security-Policy stopped before they left."""
    asked, stopped = {}, set()
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            asked[msg["params"]["requestId"]] = msg["params"]["request"]["url"]
        elif msg["method"] == "Network.loadingFailed" and msg["params"].get("blockedReason") == "csp":
            stopped.add(msg["params"]["requestId"])
    return [url for rid, url in asked.items() if rid not in stopped]


def test_docs_work_offline_and_authorise(offline_browser: Any, api: ApiProcess, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    d = offline_browser

    def one(css: str) -> Any:
        return d.find_element(By.CSS_SELECTOR, css)

    d.get(api.base + "/docs")
    wait(d, tmp_path, "Swagger UI with its Authorize button", lambda: one(".swagger-ui .auth-wrapper button.authorize"))
    assert "smsbot HTTP API" in one(".swagger-ui .info .title").text

    op = wait(d, tmp_path, "the GET /v1/status operation", lambda: one("#operations-status-get_status_v1_status_get"))
    op.find_element(By.CSS_SELECTOR, ".opblock-summary").click()

    def execute_and_read() -> tuple[str, str]:
        wait(d, tmp_path, "the Execute button", lambda: op.find_element(By.CSS_SELECTOR, "button.execute")).click()
        status = wait(d, tmp_path, "the live answer", lambda: op.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status").text.strip())
        body = op.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
        return status, body

    status, body = execute_and_read()
    assert status.startswith("401") and "missing bearer token" in body, (status, body)
    op.find_element(By.CSS_SELECTOR, "button.btn-clear").click()  # the answer cleared: the next one is new

    one(".swagger-ui .auth-wrapper button.authorize").click()
    box = wait(d, tmp_path, "the bearer input", lambda: one(".modal-ux input[type=text], .modal-ux input[type=password]"))
    box.send_keys(RO)
    one(".modal-ux .auth-btn-wrapper button.authorize").click()
    wait(d, tmp_path, "authorised", lambda: "Logout" in one(".modal-ux .auth-btn-wrapper").text)
    one(".modal-ux button.btn-done").click()

    status, body = execute_and_read()
    assert status.startswith("200"), (status, body)
    answer = json.loads(body)
    assert answer["redis"] == "ok" and isinstance(answer["instances"], list), answer

    d.get(api.base + "/redoc")
    wait(d, tmp_path, "ReDoc rendered", lambda: "smsbot HTTP API" in one(".api-info h1").text)
    wait(d, tmp_path, "ReDoc's operations", lambda: "Place an order" in d.find_element(By.TAG_NAME, "body").text)

    urls = requested_urls(d)
    assert any(u.endswith("/openapi.json") for u in urls) and any(u.endswith(".js") for u in urls), urls
    outside = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:")) and not u.startswith(api.base + "/")]
    assert not outside, f"the docs reached beyond loopback: {outside}"
    api.assert_clean_log()
