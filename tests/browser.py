"""Headless Chromium for the tests of web pages (Debian's chromium and chromium-driver, which
.ci/run installs): one way to start it, skipped with a line saying what to install when absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
COMMON_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--lang=en-US")
# no network but loopback: names resolve to nothing, other addresses go to a closed proxy
LOOPBACK_ONLY = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
                 "--proxy-bypass-list=127.0.0.1")


def chromium(tmp_path: Path, *, window: str, args: Iterable[str] = (), logs: Iterable[str] = ("browser",)) -> Iterator[Any]:
    """A selenium driver of headless Chromium (a generator for a fixture: yields it, quits it):
    a profile under `tmp_path`, a `window` size ("1280,1400"), more command-line `args`, and the
    `logs` kept ("browser", "performance")."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(f"Chromium is not installed ({', '.join(missing)} missing): Debian's chromium, chromium-driver "
                    "and fonts-noto-cjk are needed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (*COMMON_ARGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={window}", *args):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {kind: "ALL" for kind in logs})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
