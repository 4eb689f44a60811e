"""Headless Chromium for the tests of web pages (Debian's chromium and chromium-driver, which
.ci/run installs): one way to start it, skipped with a line saying what to install when absent
(`chromium`; the `browser` fixture of tests/conftest.py is one), and a `Page` to read a page in it
with waits that say what they waited for."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

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


class Page:
    """A page in the browser, with waits that say what they waited for; on the testers' page of
    handsets (the simulator's web page) also a handset by its number, its messages, sending from it."""

    def __init__(self, driver: Any, tmp_path: Path):
        self.d = driver
        self.tmp_path = tmp_path

    def wait(self, what: str, cond: Callable[[], Any], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                v = cond()
                if v:
                    return v
            except Exception as e:  # noqa: BLE001 - stale elements while the page updates
                last = e
            time.sleep(0.1)  # poll interval of a condition awaited in the browser (elements come and go)
        self.d.save_screenshot(str(self.tmp_path / "failure.png"))
        console = [f"{e['level']} {e['message']}" for e in self.d.get_log("browser")]
        raise AssertionError(f"waited {timeout}s for {what} (last error {last!r}); screenshot "
                             f"{self.tmp_path / 'failure.png'}; browser console: {console}")

    def all(self, css: str, root: Any = None) -> list[Any]:
        return (root or self.d).find_elements(By.CSS_SELECTOR, css)

    def one(self, css: str, root: Any = None) -> Any:
        return (root or self.d).find_element(By.CSS_SELECTOR, css)

    # -- the testers' page of handsets
    def handset(self, msisdn: str) -> Any:
        return self.wait(f"handset {msisdn}", lambda: next(
            (h for h in self.all("#handsets .handset") if self.one(".msisdn", h).get_attribute("value") == msisdn), None))

    def mt_texts(self, h: Any) -> list[str]:
        return [e.text for e in self.all(".msg.mt .bubble", h)]

    def send(self, h: Any, text: str) -> None:
        box = self.one("textarea.text", h)
        box.send_keys(text)
        box.send_keys(Keys.ENTER)
        self.wait(f"the composer of {h} to empty after sending {text!r}", lambda: box.get_attribute("value") == "")

    def mt_with(self, h: Any, needle: str) -> Any:
        return self.wait(f"an MT containing {needle!r}", lambda: next(
            (m for m in self.all(".msg.mt", h) if needle in self.one(".bubble", m).text), None))
