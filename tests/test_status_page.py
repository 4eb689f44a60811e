"""The bot's ``/status`` page (on ``metrics.port``): live MO/s, MT/s and queue-lag charts from the bot's
own counters, drawn as inline SVG by a script the package serves (nothing from a CDN).

The rates are checked from a sampler with an injected clock; the page's parts over HTTP; and the
page itself in Debian's headless Chromium while the simulator sends MOs faster than the SMSC
accepts the replies, so every chart has points and the queue charts rise. Set
``SMSBOT_STATUS_SCREENSHOT=PATH`` to also write the screenshot there (``docs/status.png`` is made
that way).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .helpers import wait_until
from smsbot.status_charts import Reading, Sampler

from .conftest import REPO, World
from .running_bot import free_port, http_get
from .browser import Page


def reading(mo: int, mt: int, waiting: int = 0, depth: int | None = 0, age: float | None = None) -> Reading:
    return Reading(mo_total=mo, mt_total=mt, waiting_here=waiting, depth=depth, oldest_age_s=age, bound=True, redis=depth is not None)


def test_the_sampler_turns_counter_totals_into_per_second_rates():
    now = [1000.0]
    readings = iter([reading(0, 0), reading(10, 8, 3, 5, 0.5), reading(40, 38, 0, 0), reading(40, 38, depth=None)])
    sampler = Sampler(lambda: next(readings), history=3, clock=lambda: now[0])
    assert sampler.series()["points"] == []
    for step in (1.0, 2.0, 1.0, 0.0):
        sampler.sample()
        now[0] += step
    s = sampler.series()
    assert s["history"] == 3 and s["mo_total"] == 40 and s["redis"] is False  # the last reading: Redis did not answer
    # the first sample fell out of the history of 3; rates over 2 s, then over 1 s
    assert s["points"] == [
        {"t": 1003.0, "mo_per_s": 15.0, "mt_per_s": 15.0, "waiting_here": 0, "depth": 0, "oldest_age_s": None},
        {"t": 1004.0, "mo_per_s": 0.0, "mt_per_s": 0.0, "waiting_here": 0, "depth": None, "oldest_age_s": None},
    ]


def test_the_page_and_its_script_come_from_the_bot_with_nothing_from_elsewhere(make_world: Callable[..., World]):
    port = free_port()
    world = make_world(**{"metrics.port": port})
    base = f"http://127.0.0.1:{port}"
    code, page = http_get(base + "/status")
    assert code == 200 and world.bot.instance.encode() in page
    code, script = http_get(base + "/status/charts.js")
    assert code == 200 and b"polyline" in script
    for text in (page, script):  # no CDN, no font service: every URL is relative
        assert not re.search(rb"(src|href)=\"(https?:)?//|https?://(?!www\.w3\.org/2000/svg)", text)
    series = lambda: json.loads(http_get(base + "/status/series")[1])  # noqa: E731
    assert series()["interval_s"] == 1.0
    assert wait_until(lambda: series()["bound"] is True, 5)  # the first sample may predate the bind
    assert http_get(base + "/status/nothing")[0] == 404


CHART_POINTS = """
const fig = document.getElementById(arguments[0]);
const baseline = 120 - 18;
return Array.from(fig.querySelectorAll("polyline")).map((line) => ({
  key: line.dataset.key,
  ys: line.getAttribute("points").split(" ").filter(Boolean).map((p) => baseline - Number(p.split(",")[1])),
}));
"""


class Traffic:
    """MOs from many handsets at `per_second`, on a thread, until stopped."""

    def __init__(self, world: World, per_second: float):
        self.world, self.per_second = world, per_second
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        numbers = itertools.cycle([f"138001{i:05d}" for i in range(40)])
        while not self.stop.wait(1 / self.per_second):
            self.world.sim.inject_mo(next(numbers), "10086", "0000")
            self.sent += 1


@pytest.fixture
def traffic() -> Iterator[Callable[[World, float], Traffic]]:
    started: list[Traffic] = []

    def start(world: World, per_second: float) -> Traffic:
        t = Traffic(world, per_second)
        started.append(t)
        t.thread.start()
        return t

    yield start
    for t in started:
        t.stop.set()
        t.thread.join(10)


def test_the_status_page_charts_live_rates_and_queue_lag_under_load(make_world: Callable[..., World], browser: Any,
                                                                      traffic: Any, tmp_path: Path):
    port = free_port()
    # a short drain at the end: the backlog left is not what this test is about
    world = make_world(**{"metrics.port": port, "smsc.window": 5, "log.level": "WARNING", "smsc.drain_timeout": 0.5})
    world.sim.set_faults(resp_delay_ms=400)  # the SMSC accepts at most 5 per 0.4 s: replies queue up
    load = traffic(world, 40)
    browser.set_window_size(1120, 760)
    browser.get(f"http://127.0.0.1:{port}/status")
    page = Page(browser, tmp_path)
    page.wait("the page live", lambda: page.one("#live").get_attribute("data-state") == "live")
    page.wait("bound and Redis shown", lambda: page.one("#bound").text == "SMSC bound" and page.one("#redis").text == "Redis ok")

    def risen(chart: str, key: str, points: int = 6) -> bool:
        lines = {line["key"]: line["ys"] for line in browser.execute_script(CHART_POINTS, chart)}
        return len(lines.get(key, [])) >= points and max(lines[key]) > 0

    # a sample a second: 6 points prove each chart moves; the docs' screenshot waits for a fuller chart
    target = os.environ.get("SMSBOT_STATUS_SCREENSHOT")
    points = 12 if target else 6
    page.wait("MO/s charted", lambda: risen("chart-mo", "mo_per_s", points=points), timeout=40)
    page.wait("MT/s charted", lambda: risen("chart-mt", "mt_per_s"), timeout=20)
    page.wait("the outbox backlog charted", lambda: risen("chart-queue", "depth") and risen("chart-queue", "waiting_here"), timeout=20)
    page.wait("the oldest unsent reply's age charted", lambda: risen("chart-age", "oldest_age_s"), timeout=20)
    assert int(page.one("#chart-mo").get_attribute("data-points")) >= points
    assert re.fullmatch(r"[\d.,]+ in Redis · [\d.,]+ here", page.one("#chart-queue .now").text)
    assert 0 < int(page.one("#mo-total").text.replace(",", "")) <= load.sent

    shot = tmp_path / "status.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    if target:
        dest = Path(target) if Path(target).is_absolute() else REPO / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, dest)
