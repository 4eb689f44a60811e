"""End to end over SMPP: flow control and delivery of replies against a misbehaving SMSC.

The real bot against the simulator's fault modes (`SimSmsc.set_faults`): a slow SMSC shows the
bot's window, a rate-limited one its TPS limit; throttled submits are retried until accepted, a
permanent error is recorded once and not retried, a connection dropped with a submit in flight or
right after a resp loses and duplicates nothing; enquire_link on an idle link, unbind on stop.

Assertions are on counts and order, never on tight timings (the machine is shared and loaded).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pytest

from smsbot.simulator.faults import peak_rate
from smsbot.simulator.smsc import SimSmsc

from .conftest import Phone, World
from .helpers import wait_until

HELP = "帮助"
HELP_NEEDLE = "欢迎使用10086短信服务"


@contextmanager
def running(make_settings: Callable[..., Any], faults: dict[str, Any] | None = None, **overrides: Any) -> Iterator[World]:
    settings = make_settings(**overrides)
    sim = SimSmsc.from_settings(settings).start()
    if faults:
        sim.set_faults(**faults)
    w = World(settings, sim)
    try:
        w.start_bot()
        yield w
    finally:
        w.stop()


def phones(w: World, n: int, base: int = 13800000000) -> list[Phone]:
    return [w.handset(str(base + i)) for i in range(n)]


def ask_all(w: World, ps: list[Phone], timeout: float = 20.0, needle: str = HELP_NEEDLE,
            redeliveries: bool = False) -> dict[str, int]:
    """Every phone sends 帮助 at once; each gets exactly one whole help reply (checked again once the
    bot and the SMSC are settled: `World.settled`), and the SMSC accepted each part of it exactly
    once. With `redeliveries` (the link died with resps unread, so the SMSC delivers those MOs
    again) a phone may get the reply once more, as many times in all as the bot counted copies,
    and nothing else goes twice. Returns
    msisdn -> parts (the help text's length, and so its parts, depends on the commands configured)."""
    for p in ps:
        p.send(HELP)
    deadline = time.monotonic() + timeout
    parts: dict[str, int] = {}
    dups: dict[str, list[dict[str, Any]]] = {}
    for p in ps:
        got = p.expect(1, timeout=max(1.0, deadline - time.monotonic()))
        assert needle in got[0]["text"], (p.msisdn, got)
        parts[p.msisdn] = got[0]["parts"]
        dups[p.msisdn] = got[1:]
    w.settled()
    for p in ps:
        dups[p.msisdn] += p.h.collect(0)
    copies = sum(len(m) for m in dups.values())
    if redeliveries:
        assert all(needle in m["text"] for ms in dups.values() for m in ms), dups
        assert copies == sum(b.metrics.reply_copies._value.get() for b in w.bots), "every copy is counted"
    else:
        assert copies == 0, f"replies arrived twice: {dups}"
    sent = accepted_per_destination(w)
    assert {m: sent.get(m, 0) for m in parts} == {m: n * (1 + len(dups[m])) for m, n in parts.items()}, \
        "each part accepted exactly once per reply (a copy is a reply of its own)"
    assert w.sim.stats()["mt_received"] == len(ps) + copies
    return parts


def accepted(w: World) -> list[dict[str, Any]]:
    return [e for e in w.sim.submit_log() if e["status"] == 0]


def accepted_per_destination(w: World) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in accepted(w):
        out[e["to"]] = out.get(e["to"], 0) + 1
    return out


def test_window_bounds_submits_awaiting_resp(make_settings):
    with running(make_settings, {"resp_delay_ms": 200}, **{"smsc.window": 2}) as w:
        ask_all(w, phones(w, 10))
        st = w.sim.stats()
        assert st["max_outstanding_submits"] == 2, st  # used to the full, never beyond
        assert st["submits_throttled"] == 0 and st["submits_dropped"] == 0


def test_tps_limit_paces_submits(make_settings):
    english_help = [{"code": "10086", "commands": ["help"], "language": "en"}]  # a short, one-part reply
    with running(make_settings, **{"smsc.max_tps": 5, "short_codes": english_help}) as w:
        parts = ask_all(w, phones(w, 12), needle="Welcome to 10086")
        times = sorted(e["t"] for e in accepted(w))
        n = len(times)
        assert n == sum(parts.values()) >= 12
        # n submits at <= 5 in any second: the first 5 may go at once, each further 5 a second later
        # at the earliest; 0.2 s slack for jitter (12 submits: >= 1.8 s from the first to the last)
        assert times[-1] - times[0] >= (n - 1) // 5 - 0.2, times
        # never more than 5 within a second; measured on arrival at the SMSC, so over 0.8 s windows
        # (up to 0.2 s of jitter on a loaded machine); a bucket letting 5 go at once, then 5 a second,
        # puts 8 into the first 0.8 s
        assert peak_rate(times, 0.8) <= 5, times
        assert w.sim.stats()["submits_throttled"] == 0


@pytest.mark.parametrize("faults,least", [({"throttle_every": 2}, 2), ({"throttle_first": 5}, 5)])
def test_throttled_submits_are_retried_until_accepted(make_settings, faults, least):
    with running(make_settings, faults) as w:
        ask_all(w, phones(w, 4))
        assert w.sim.stats()["submits_throttled"] >= least, w.sim.stats()


def test_smsc_rate_limit_throttles_and_every_reply_arrives_once(make_settings):
    with running(make_settings, {"max_tps": 4}) as w:  # the bot itself unlimited: it bursts
        ask_all(w, phones(w, 5))
        assert w.sim.stats()["submits_throttled"] >= 1, w.sim.stats()


def test_permanent_error_is_recorded_and_not_retried(make_settings):
    victim = "13900000042"
    with running(make_settings, {"reject": {victim: "0x0B"}}) as w:
        vp = w.handset(victim)
        vp.send(HELP)
        ask_all(w, phones(w, 3))
        assert vp.h.collect(0) == []

        def to_victim() -> int:
            return sum(1 for e in w.sim.submit_log() if e["to"] == victim)

        assert wait_until(lambda: to_victim() >= 1, 10)
        first = to_victim()
        w.settled()
        assert to_victim() == first, "a permanent error must not be retried"
        assert all(e["status"] == 0x0B for e in w.sim.submit_log() if e["to"] == victim)
        store = w.bot.store
        pattern = store.keys.mt_rejected("x*")

        def rejected_records() -> list[str]:
            return [k.decode() for k in store.redis.scan_iter(match=pattern)]

        assert wait_until(lambda: len(rejected_records()) == 1, 10), rejected_records()
        mt_id = rejected_records()[0].split(":mt:{", 1)[1].split("}", 1)[0]
        (rec,) = store.mt_records(mt_id)
        assert rec["state"] == "REJECTED" and rec["to"] == victim and rec["status"] == "0xb", rec
        assert mt_id == "x" + rec["entry"]
        # every part of the two-part reply may be in flight when the first is refused: one failure,
        # recorded for the first part refused
        assert rec["part"] == "1" and w.bot.sender.failed_total == 1, rec


def test_drop_with_submit_in_flight_resends_after_reconnect(make_settings):
    """The link drops with a submit in flight: it goes again on the new bind; MOs whose resps died
    with the link come again and are answered (a copy at most, counted)."""
    with running(make_settings, {"drop_after_submit": 3}) as w:
        ask_all(w, phones(w, 6), timeout=30, redeliveries=True)
        st = w.sim.stats()
        assert st["submits_dropped"] >= 1 and st["connections_dropped"] == 1, st
        assert w.bot.transport.reconnects >= 1


def test_drop_right_after_resp_does_not_duplicate(make_settings):
    """The SMSC stops reading after the third submit_sm_resp: what it had answered is not sent again;
    MOs whose resps it never read come again and are answered (a copy at most, counted)."""
    with running(make_settings, {"drop_after_resp": 3}) as w:
        parts = ask_all(w, phones(w, 6), timeout=30, redeliveries=True)
        st = w.sim.stats()
        assert st["connections_dropped"] == 1 and w.bot.transport.reconnects >= 1, st
        third = next(e for e in w.sim.submit_log() if e["n"] == 3)
        assert third["status"] == 0
        assert accepted_per_destination(w)[third["to"]] == parts[third["to"]], "the answered submit was sent again"


def test_enquire_link_on_idle_link_and_unbind_on_stop(make_settings):
    with running(make_settings, **{"smsc.enquire_link_interval": 0.3}) as w:
        assert wait_until(lambda: w.sim.stats()["enquire_links_received"] >= 3, 15), w.sim.stats()
        assert w.bot.transport.reconnects == 0, "enquire_link_resp must keep the link up"
        assert w.sim.stats()["unbinds_received"] == 0
        w.bot.stop()
        assert not w.bot._thread.is_alive()
        assert wait_until(lambda: w.sim.stats()["binds"] == 0, 5)
        st = w.sim.stats()
        assert st["unbinds_received"] == 1 and st["binds_total"] == 1, st


def test_queued_alert_goes_out_under_sustained_mo_load(make_settings):
    """Replies that are not answers to an MO (usage alerts, charge reminders) come from the queue
    stream, polled on a schedule. Under a constant MO load the transport always has a batch in
    flight; the queue must still be served then, not only once the load stops.

    The load comes from the benchmark's load SMSC (unbounded window: MOs always wait); a usage
    report crossing the 10 MB threshold is written once the load runs, and the alert (a submit_sm
    to a number that sent no MO) must reach the SMSC while MOs keep coming."""
    from bench.load_smsc import WORKLOADS, LoadSmsc
    from commands import usage

    from smsbot.app import Bot

    msisdn, quota_mb = "13800138000", 1024  # the default plan 4G_1GB
    smsc = LoadSmsc()
    settings = make_settings(**{"smsc.host": "127.0.0.1", "smsc.port": smsc.port, "log.level": "INFO"})
    bot = Bot(settings).start()
    marks: dict[str, Any] = {}

    def push_report() -> None:
        fields = usage.event_fields(msisdn, (quota_mb - 9) * usage.MB, usage.current_cycle(settings), None, source="test")
        bot.store.redis.xadd(bot.store.keys.usage_events(), fields)
        marks["pushed"] = time.monotonic()

    def while_loaded() -> None:  # MOs are still being sent and answered at this point
        marks["alerts_under_load"] = smsc._run.stats.unmatched  # submit_sm to a number without an MO out

    try:
        smsc.wait_bound(10)
        stats = smsc.run(WORKLOADS["c"], 0, 20_000, 200, time_limit=120,
                         milestones={1_000: push_report, 19_000: while_loaded})
    finally:
        bot.stop()
        smsc.close()
    assert stats.completed == 20_000 and stats.rejected == 0, stats.summary()
    assert "pushed" in marks
    assert marks.get("alerts_under_load") == 1, f"the alert did not go out during 18,000 MOs of load: {marks}"
    assert stats.unmatched == 1, "one alert, not more"
