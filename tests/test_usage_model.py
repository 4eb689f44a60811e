"""The data-usage threshold logic: the real Lua step (a Store on the real redis-server) against a plain
Python model, over random report sequences with duplicates, reordering, several cycles and plans.
Plus the pure pieces: size parsing, plan config validation, rendering."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from commands import usage
from commands.usage import usage_settings
from smsbot import config
from smsbot.connections import open_store
from smsbot.router import Router

from .conftest import REPO

MB = usage.MB
CYCLES = ["2026-10", "2026-11", "2026-12"]
_numbers = itertools.count(13900000000)


# -- the model --------------------------------------------------------------------------------------
@dataclass
class ModelState:
    cycle: str
    used: int
    plan: str
    alerted: set[tuple[str, int]] = field(default_factory=set)


class Model:
    """Which alert (threshold in bytes) each report produces, stated plainly:

    the newest cycle seen is the only one that counts; in it, the highest total seen is the usage and
    its report's plan the plan; when that usage leaves <= t of the quota, threshold t is reached; an
    alert goes out when a report makes the lowest reached threshold reached for the first time (for
    this plan, this cycle), and names that threshold."""

    def __init__(self) -> None:
        self.s: ModelState | None = None

    def apply(self, cycle: str, used: int, plan: str, quota: int, ths: list[int]) -> int | None:
        s = self.s
        if s is not None and cycle < s.cycle:
            return None
        if s is not None and cycle == s.cycle and used <= s.used:
            return None
        if s is None or cycle > s.cycle:
            s = self.s = ModelState(cycle, used, plan)
        s.used, s.plan = used, plan
        reached = [t for t in ths if quota - used <= t]
        if not reached:
            return None
        lowest = min(reached)
        fresh = (plan, lowest) not in s.alerted
        s.alerted.update((plan, t) for t in reached)
        return lowest if fresh else None


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
def store(make_settings: Callable[..., config.Settings]):
    s = open_store(make_settings())
    s.load_scripts()
    yield s
    s.close()


def run_reports(store, settings: config.Settings, msisdn: str, reports: list[tuple[str, int, str]]):
    calls = []
    for i, (cycle, used, plan_code) in enumerate(reports):
        args = usage.report_args(settings, usage_settings(settings).plan(plan_code), used, cycle, 1_800_000_000_000 + i)
        calls.append(store.mo_call("usage.report", msisdn, "10086", correlation=f"{i}-0", args=args, extra_keys=("usage",)))
    return store.run_batch(calls)  # one pipeline: applied in order, one atomic step each


def interesting_used(quota_mb: int, ths_mb: list[int]) -> list[int]:
    vals = {0, quota_mb * MB, (quota_mb + 100) * MB, (quota_mb // 2) * MB}
    for t in ths_mb + [20, 7]:
        edge = (quota_mb - t) * MB
        vals.update(v for v in (edge - 1, edge, edge + 1, edge + MB // 2) if v >= 0)
    return sorted(vals)


PLAN_A = ("4G_1GB", 1024, [10, 5, 0])
PLAN_B = ("CARD_10GB", 10240, [50, 0])
USED_A = interesting_used(PLAN_A[1], PLAN_A[2])
USED_B = interesting_used(PLAN_B[1], PLAN_B[2])

report_st = st.one_of(
    st.tuples(st.sampled_from(CYCLES), st.sampled_from(USED_A), st.just(PLAN_A[0])),
    st.tuples(st.sampled_from(CYCLES), st.sampled_from(USED_B), st.just(PLAN_B[0])),
)


@st.composite
def shuffled_history(draw) -> list[tuple[str, int, str]]:
    """A real history (per cycle non-decreasing totals of one plan), then duplicated and reordered."""
    out = []
    for cycle in sorted(draw(st.sets(st.sampled_from(CYCLES), min_size=1, max_size=2))):
        plan, _, _ = draw(st.sampled_from([PLAN_A, PLAN_B]))
        pool = USED_A if plan == PLAN_A[0] else USED_B
        totals = sorted(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8)))
        out += [(cycle, u, plan) for u in totals]
    dups = draw(st.lists(st.sampled_from(out), max_size=6))
    return draw(st.permutations(out + dups))


def queued_alerts(store, msisdn: str) -> list[dict[str, Any]]:
    """The alert intents queued for `msisdn`, in order (the queue stream, where intents that answer
    no MO go)."""
    out = []
    for _, f in store.redis.xrange(store.keys.subscriber(msisdn).queue):
        if f[b"to"].decode() == msisdn and f[b"tpl"] == b"usage.alert":
            out.append(json.loads(f[b"data"]))
    return out


def check_against_model(store, settings, reports):
    msisdn = str(next(_numbers))
    results = run_reports(store, settings, msisdn, reports)
    model = Model()
    for (cycle, used, plan_code), res in zip(reports, results):
        assert not isinstance(res, Exception), str(res)
        plan = usage_settings(settings).plan(plan_code)
        expect = model.apply(cycle, used, plan_code, plan.quota_mb * MB, [t * MB for t in usage_settings(settings).thresholds_mb(plan)])
        got = int(res.extra) if res.outcome == "alerted" else None
        assert got == expect, (reports, cycle, used, plan_code, res)
    # the outbox holds exactly the alerts the model sent, in order
    sent = [a["t"] for a in queued_alerts(store, msisdn)]
    expected = []
    replay = Model()
    for cycle, used, plan_code in reports:
        plan = usage_settings(settings).plan(plan_code)
        t = replay.apply(cycle, used, plan_code, plan.quota_mb * MB, [x * MB for x in usage_settings(settings).thresholds_mb(plan)])
        if t is not None:
            expected.append(t)
    assert sent == expected
    return msisdn, expected


@hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reports=st.lists(report_st, min_size=1, max_size=25))
def test_lua_matches_model_on_random_reports(store, reports):
    check_against_model(store, store.settings, reports)


@hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reports=shuffled_history())
def test_shuffled_duplicated_history_alerts_each_threshold_at_most_once(store, reports):
    """Beyond matching the model: in a real (shuffled, duplicated) history, per cycle the alerts are
    distinct, each is reached by that cycle's highest total, and when the highest report of the last
    cycle is applied after all its lower ones, the lowest threshold it reaches has been alerted."""
    s = store.settings
    msisdn, _ = check_against_model(store, s, reports)
    alerts = queued_alerts(store, msisdn)
    by_cycle: dict[str, list[int]] = {}
    for a in alerts:
        by_cycle.setdefault(a["cycle"], []).append(a["t"])
    for cycle, ts in by_cycle.items():
        assert len(ts) == len(set(ts)), (cycle, ts)
        top = max((u for c, u, _ in reports if c == cycle), default=0)
        for a in alerts:
            if a["cycle"] == cycle:
                assert a["quota"] - a["used"] <= a["t"] and a["used"] <= top
    last = max(c for c, _, _ in reports)
    mine = [(u, p) for c, u, p in reports if c == last]
    top_used, top_plan = max(mine)
    plan = usage_settings(s).plan(top_plan)
    reached = [t * MB for t in usage_settings(s).thresholds_mb(plan) if plan.quota_mb * MB - top_used <= t * MB]
    if reached and len({p for _, p in mine}) == 1:
        assert min(reached) in by_cycle.get(last, []), (reports, by_cycle)


# -- pure pieces -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expect", [
    ("95MB", 95 * MB), ("95.5MB", 95 * MB + MB // 2), ("1GB", 1024 * MB), ("1024KB", MB), ("123456B", 123456),
    ("0", 0), ("0MB", 0), ("95mb", 95 * MB), ("95 MB", 95 * MB), ("95M", 95 * MB), ("2MiB", 2 * MB), ("1.5gb", 1536 * MB),
])
def test_parse_size(text, expect):
    assert usage.parse_size(text) == expect


@pytest.mark.parametrize("text,message", [
    ("95", "needs a unit"), ("-1MB", "not a size"), ("95XB", "not a size"), ("", "not a size"), ("MB", "not a size"),
    ("1.5B", "whole number"), ("65TB", "too large"), ("1e3MB", "not a size"),
])
def test_parse_size_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        usage.parse_size(text)


def _raw() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("mutate,key", [
    (lambda u: u["plans"][1].update(thresholds_mb=[50, 50]), "usage.plans.1"),
    (lambda u: u["plans"][1].update(thresholds_mb=[-1]), "usage.plans.1"),
    (lambda u: u["plans"][1].update(thresholds_mb=[10240]), "usage.plans.1"),
    (lambda u: u["plans"][0].update(quota_mb=8), "usage"),  # default thresholds 10 MB >= quota
    (lambda u: u.update(default_plan="NOSUCH"), "usage"),
    (lambda u: u.update(timezone="Mars/Olympus"), "usage.timezone"),
    (lambda u: u["plans"].append(dict(u["plans"][0])), "usage"),
    (lambda u: u["plans"][0].update(overage_fen_per_mb=-1), "usage.plans.0.overage_fen_per_mb"),
    (lambda u: u.update(short_code="12345"), "usage.short_code"),
])
@pytest.mark.parametrize("former", [False, True], ids=["commands.usage", "former usage"])
def test_plan_config_is_validated(mutate, key, former):
    """Each problem named where the file gives it: ``commands.usage...``, or ``usage...`` in a file of
    before (the top-level section, still accepted)."""
    raw = _raw()
    if former:
        raw["usage"] = raw["commands"].pop("usage")
    mutate(raw["usage"] if former else raw["commands"]["usage"])
    with pytest.raises(config.ConfigError) as e:
        config.from_dict(raw)
    assert (key if former else f"commands.{key}") in {k for k, _ in e.value.errors}, e.value.errors


def test_the_former_usage_section_is_accepted_with_a_note():
    raw = _raw()
    raw["usage"] = {**raw["commands"].pop("usage"), "default_plan": "CARD_10GB"}
    s = config.from_dict(raw)
    assert usage_settings(s).default_plan == "CARD_10GB" and usage_settings(s).plan("4G_1GB") is not None
    assert [k for k, _n in config.notes(s)] == ["usage"] and "'commands.usage'" in config.notes(s)[0][1]
    assert config.notes(config.from_dict(_raw())) == []  # the shipped file says it the new way


@pytest.mark.parametrize("prefix", ["SMSBOT_USAGE_", "SMSBOT_COMMANDS_USAGE_"])
def test_usage_env_overrides(prefix):
    """The variables of before (SMSBOT_USAGE_*) still set the settings, over the file's ``commands.usage``."""
    warned: list[str] = []
    s = config.load(REPO / "config.yaml", warn=warned.append, environ={
        f"{prefix}DEFAULT_THRESHOLDS_MB": "20,5,0", f"{prefix}TIMEZONE": "UTC", f"{prefix}DEFAULT_PLAN": "CARD_10GB"})
    u = usage_settings(s)
    assert u.default_thresholds_mb == [20, 5, 0] and u.timezone == "UTC" and u.default_plan == "CARD_10GB"
    assert u.thresholds_mb(u.plan("4G_1GB")) == [20, 5, 0]
    assert u.thresholds_mb(u.plan("CARD_10GB")) == [50, 0]
    assert not warned
    assert [k for k, _n in config.notes(s)] == (["usage"] if prefix == "SMSBOT_USAGE_" else [])


def test_rendering_one_decimal_and_rates():
    s = config.load(REPO / "config.yaml", environ={})
    router = Router(s, __import__("commands").all_commands())
    at = 1_795_600_000_000  # 2026-11-25 17:46:40 in Asia/Shanghai
    zh = router.render("usage.alert", {"plan": "4G_1GB", "used": 1015 * MB + 1, "quota": 1024 * MB, "t": 10 * MB, "rate": 29, "at": at, "cycle": "2026-11"}, "zh-CN", "10086")
    assert zh == "尊敬的客户，截至11月25日17:46，您的4G套餐本月剩余流量8.9MB（已使用1015.0MB，共1024MB）。套餐内流量用完后，超出部分按0.29元/MB计费。【中国移动】"
    gone = router.render("usage.alert", {"plan": "4G_1GB", "used": 1024 * MB, "quota": 1024 * MB, "t": 0, "rate": 100, "at": at, "cycle": "2026-11"}, "zh-CN", "10086")
    assert "1024MB流量已用完" in gone and "按1元/MB计费" in gone
    en = router.render("usage.report", {"plan": "CARD_10GB", "used": 0, "quota": 10240 * MB, "rate": 10, "cycle": "2026-11"}, "en", "10086")
    assert en == "Data card, Nov 2026: 0.0 MB used, 10240.0 MB left of 10240 MB."
    unknown = router.render("usage.report", {"plan": "GONE", "used": 5 * MB, "quota": 100 * MB, "rate": 0, "cycle": "2026-01"}, "zh-CN", "10086")
    assert unknown.startswith("尊敬的客户，您的GONE2026年1月已使用流量5.0MB")


def test_malformed_events_are_rejected_not_retried():
    s = config.load(REPO / "config.yaml", environ={})
    good = usage.event_fields("13800138000", 5, "2026-11", "4G_1GB", at_ms=1)
    assert usage.parse_event(s, "7-0", good)[1]["used"] == 5
    assert usage.parse_event(s, "7-0", {**good, "plan": ""})[1]["plan"] == "4G_1GB"  # default plan
    assert usage.parse_event(s, "7-0", {k: v for k, v in good.items() if k != "at"})[1]["at"] == 7
    for bad in ({"used": "-5"}, {"used": "5.5"}, {"used": str(2**47)}, {"cycle": "2026-13"}, {"cycle": "26-11"},
                {"plan": "NOSUCH"}, {"msisdn": "abc"}, {"at": "soon"}):
        with pytest.raises(ValueError):
            usage.parse_event(s, "7-0", {**good, **bad})
