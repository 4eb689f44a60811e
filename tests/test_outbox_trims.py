"""End to end over SMPP and a real Redis: the replies a sender sent are recorded by its next MO
steps' own XADD (``MINID``) in its own outbox stream, not by an XDEL per batch; a throttled reply
holds the MINID back and the fallback records the others explicitly. Redis's own command counts
(INFO commandstats) are the evidence. Adoption of a dead sender's stream: tests/test_delivery.py,
tests/test_e2e_crash.py."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis

from .conftest import Phone, World
from .helpers import wait_until

HELP, HELP_NEEDLE = "帮助", "欢迎使用10086短信服务"
QUIET = {"delivery.ack_flush_seconds": 60.0}  # no idle record in the test's time: only MINIDs and the blocked fallback


@contextmanager
def running(make_settings: Callable[..., Any], faults: dict[str, Any] | None = None, **overrides: Any) -> Iterator[World]:
    """A bot bound to the simulated SMSC (then given `faults`), stopped (drained) on the way out."""
    w = World.started(make_settings(**{**QUIET, **overrides}))
    try:
        if faults:
            w.sim.set_faults(**faults)
        yield w
    finally:
        w.stop()


def phones(w: World, n: int, base: int = 13800000000) -> list[Phone]:
    return [w.handset(str(base + i)) for i in range(n)]


def calls(client: Any, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_replies_are_recorded_by_the_next_mo_steps_minid_without_xdel(make_settings):
    with running(make_settings) as w:
        bot = w.bots[0]
        red, stream = redis.Redis.from_url(w.settings.redis.url), bot.store.keys.own_outboxes(bot.delivery.consumer)[0]
        red.config_resetstat()
        first, second = phones(w, 8), phones(w, 8, base=13900000000)
        for p in first:
            p.send(HELP)
        for p in first:
            assert HELP_NEEDLE in p.expect(1, timeout=20)[0]["text"]
        assert wait_until(lambda: bot.sender.inflight == 0, 10)
        waiting = {i for i, _f in red.xrange(stream)}
        assert 0 < len(waiting) <= len(first), "the last accepted wait for an MO to trim them (earlier MOs trimmed the rest)"
        for p in second:
            p.send(HELP)
        for p in second:
            assert HELP_NEEDLE in p.expect(1, timeout=20)[0]["text"]
        assert not waiting & {i for i, _f in red.xrange(stream)}, "the second MOs' XADD trimmed the first replies"
        assert red.hexists(bot.store.keys.outbox_registry(0), bot.delivery.consumer)
        assert calls(red, "xdel") == 0 and calls(red, "xtrim") == 0, red.info("commandstats")
        assert calls(red, "xadd") == len(first) + len(second)
        for p in first + second:
            assert p.h.collect(0) == [], "each reply once"
    # stopped: the drain recorded what was left in one XTRIM, nothing for a sibling to adopt
    assert red.xlen(stream) == 0 and calls(red, "xdel") == 0 and calls(red, "xtrim") == 1
    red.close()


def test_a_throttled_reply_holds_the_minid_back_and_the_fallback_records_the_rest(make_settings):
    with running(make_settings, {"throttle_first": 1}, **{"smsc.window": 2}) as w:
        bot = w.bots[0]
        red, stream = redis.Redis.from_url(w.settings.redis.url), bot.store.keys.own_outboxes(bot.delivery.consumer)[0]
        red.config_resetstat()
        ps = phones(w, 8)
        for p in ps:
            p.send(HELP)
        for p in ps:
            assert HELP_NEEDLE in p.expect(1, timeout=30)[0]["text"]
        assert w.sim.stats()["submits_throttled"] == 1
        assert calls(red, "xdel") >= 1, "accepted replies above the throttled one, blocking the window: XDEL"
        assert wait_until(lambda: bot.sender.inflight == 0, 10)
        for p in ps:
            assert p.h.collect(0) == [], "each reply once"
    assert red.xlen(stream) == 0
    red.close()

