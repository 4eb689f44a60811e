"""Webhooks, piece by piece against the real Redis of the test session: the backoff schedule (an
injected random source), signatures, the job store's leases, retries and dead letters (an injected
clock), the collector's claim of entries a dead instance left, what each audit entry becomes, and
the configuration's one-line errors.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from smsbot import config, connections
from smsbot.keys import WEBHOOKS_GROUP, Keys
from smsbot.store import Store
from smsbot.webhooks import events as ev
from smsbot.webhooks import signing
from smsbot.webhooks.backoff import Backoff
from smsbot.webhooks.collector import Collector
from smsbot.webhooks.jobs import Job, Jobs
from smsbot.webhooks.sender import EndpointSender
from smsbot.reload import plan_reload

from .conftest import REPO, base_config
from .webhook_receiver import SECRET, documented_verify, endpoint


# -- backoff ------------------------------------------------------------------------------------------
def test_backoff_schedule_doubles_with_equal_jitter_up_to_the_cap() -> None:
    b = Backoff(initial=1.0, maximum=60.0)
    assert [b.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [b.delay(n, lambda: 0.0) for n in (1, 2, 3, 7)] == [0.5, 1.0, 2.0, 30.0]  # never below half the ceiling
    assert [b.delay(n, lambda: 1.0) for n in (1, 2, 3, 7)] == [1.0, 2.0, 4.0, 60.0]  # never above it
    assert b.delay(4, lambda: 0.25) == 5.0
    assert b.delay(10_000, lambda: 1.0) == 60.0  # no overflow after many attempts
    assert Backoff(0.05, 0.2).delay(1, lambda: 0.5) == pytest.approx(0.0375)


# -- signatures ---------------------------------------------------------------------------------------
def test_signature_and_the_documented_verifier_agree() -> None:
    body = '{"id":"a1-1-0","type":"ticket.opened","data":{"text":"多扣了5元"}}'.encode()
    sig = signing.sign(SECRET, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    documented = documented_verify()
    for verify in (signing.verify, documented):
        assert verify(SECRET, body, sig)
        assert not verify(SECRET, body.replace("5元".encode(), "6元".encode()), sig)
        assert not verify("wrong-secret-0000000", body, sig)
        assert not verify(SECRET, body, "sha256=" + "0" * 64)


# -- the job store, with an injected clock ------------------------------------------------------------
@pytest.fixture
def store(make_settings) -> Store:
    st = connections.store(make_settings())
    yield st
    st.close()


def _refused_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connections are refused
    return f"http://127.0.0.1:{port}/hooks"


def test_failed_attempts_are_scheduled_by_the_backoff_then_dead_lettered(store: Store) -> None:
    jobs = Jobs(store)
    now = [1_800_000_000.0]
    ep = config.WebhookEndpoint.model_validate(endpoint(_refused_url(), ["*"], max_attempts=3, backoff_initial_seconds=10,
                                                        backoff_max_seconds=15))
    sender = EndpointSender(ep, jobs, threading.Event(), clock=lambda: now[0], rand=lambda: 1.0)
    body = ev.Event("a3-1-0", ev.CANCELLED, 1, {"msisdn": "13800138000"}).body()
    assert jobs.enqueue("crm", [("a3-1-0", body)], 1_800_000_000_000) == 1
    assert jobs.enqueue("crm", [("a3-1-0", body)], 1_800_000_000_000) == 0  # collected twice: still one job
    due = store.keys.webhook_due("crm")
    lease_ms = int((2 * ep.timeout_seconds + 1) * 1000)

    assert sender.step() == 0.0  # attempt 1: refused; next after the ceiling 10 s (rand 1.0)
    assert store.redis.zscore(due, "a3-1-0") == 1_800_000_000_000 + 10_000
    assert sender.step() == pytest.approx(10.0)  # nothing due: it says when the next one is
    now[0] += 10
    assert sender.step() == 0.0  # attempt 2: the ceiling doubles, capped at 15 s
    assert store.redis.zscore(due, "a3-1-0") == 1_800_000_010_000 + 15_000
    now[0] += 15
    # a taken job is held by its lease: another sender sees it due only when the lease ends
    taken = jobs.take("crm", int(now[0] * 1000), lease_ms)
    assert isinstance(taken, Job) and taken.attempt == 3
    assert jobs.take("crm", int(now[0] * 1000), lease_ms) == int(now[0] * 1000) + lease_ms
    assert sender.attempt(taken) == "dead"  # attempt 3 of 3
    assert jobs.counts("crm") == (0, 1)
    [letter] = jobs.dead_letters("crm")
    assert (letter.id, letter.type, letter.attempts, letter.dead_at) == ("a3-1-0", ev.CANCELLED, 3, 1_800_000_025_000)
    assert "ConnectionRefused" in letter.error or "refused" in letter.error.lower(), letter.error
    assert letter.body == body
    # replayed: a fresh job (attempts from 1 again), due at once, same body
    assert jobs.replay("crm", None, 1_800_000_030_000) == ["a3-1-0"]
    again = jobs.take("crm", 1_800_000_030_000, lease_ms)
    assert isinstance(again, Job) and again.attempt == 1 and again.body == body.encode()
    jobs.done("crm", "a3-1-0")
    assert jobs.counts("crm") == (0, 0) and jobs.take("crm", 1_800_000_030_000, lease_ms) is None


def test_a_failure_reported_after_someone_else_delivered_changes_nothing(store: Store) -> None:
    jobs = Jobs(store)
    jobs.enqueue("crm", [("w-1-0", "{}")], 1000)
    slow = jobs.take("crm", 1000, 10)
    quick = jobs.take("crm", 2000, 10)  # the slow sender's lease ran out: taken again, delivered
    assert isinstance(slow, Job) and isinstance(quick, Job) and quick.attempt == 2
    jobs.done("crm", "w-1-0")
    assert jobs.fail("crm", slow, 9000, 5, "timeout", 3000) == "gone"
    assert jobs.counts("crm") == (0, 0) and store.redis.zcard(store.keys.webhook_due("crm")) == 0


def test_replaying_an_id_replays_only_that_id_even_one_named_star(store: Store) -> None:
    """`replay` of named ids never means "all of them": an id '*' is an id like any other (the
    former script read a lone '*' as "every dead letter")."""
    jobs = Jobs(store)
    jobs.enqueue("erp", [("s-1-0", "{}"), ("s-2-0", "{}")], 1000)
    for _ in range(2):
        job = jobs.take("erp", 1000, 10)
        assert isinstance(job, Job) and jobs.fail("erp", job, 2000, 1, "refused", 1000) == "dead"
    assert jobs.replay("erp", ["*"], 3000) == [] and jobs.counts("erp") == (0, 2)
    assert jobs.replay("erp", ["s-2-0", "nope"], 3000) == ["s-2-0"] and jobs.counts("erp") == (1, 1)
    assert sorted(jobs.replay("erp", None, 3000)) == ["s-1-0"] and jobs.counts("erp") == (2, 0)


def test_the_jobs_steps_are_loaded_again_when_redis_forgot_them(store: Store) -> None:
    """The steps run through `Store.run_step`: after SCRIPT FLUSH (a restart, a failover) they load again."""
    jobs = Jobs(store)
    assert jobs.enqueue("ops", [("f-1-0", "{}")], 1000) == 1
    store.redis.script_flush()
    taken = jobs.take("ops", 1000, 10)
    assert isinstance(taken, Job) and (taken.id, taken.attempt) == ("f-1-0", 1)
    store.redis.script_flush()
    jobs.done("ops", "f-1-0")
    assert jobs.counts("ops") == (0, 0)


# -- the collector --------------------------------------------------------------------------------------
def test_entries_a_dead_instance_read_are_claimed_and_collected_once(store: Store) -> None:
    keys: Keys = store.keys
    jobs = Jobs(store)
    ep = config.WebhookEndpoint.model_validate(endpoint("http://127.0.0.1:9/", [ev.CANCELLED]))
    stop = threading.Event()
    dead = Collector(store.redis, keys, jobs, [ep], "dead-instance", stop, claim_idle_ms=0)
    dead.ensure_groups()
    audit = keys.audit(3)
    store.redis.xadd(audit, {"msisdn": "13800138000", "service": "VIDEO", "old": "active", "new": "cancelled",
                             "at": "1000", "mo": "cli:care", "reason": "admin"})
    store.redis.xadd(audit, {"msisdn": "13800138000", "service": "VIDEO", "old": "none", "new": "active",
                             "at": "1001", "mo": "cli:care", "reason": "admin"})  # a subscription added: no event
    read = dead.read()
    assert len(read) == 2  # ... and then that instance died without storing or acknowledging anything
    alive = Collector(store.redis, keys, jobs, [ep], "live-instance", stop, claim_idle_ms=0)
    claimed = alive.claim()
    assert [e[1] for e in claimed] == [e[1] for e in read]
    assert alive.apply(claimed) == 1
    assert alive.apply(claimed) == 1  # applied again (a crash before the XACK): still one job
    assert jobs.counts("crm") == (1, 0)
    assert store.redis.xpending(audit, WEBHOOKS_GROUP)["pending"] == 0
    body = json.loads(store.redis.hget(keys.webhook_jobs("crm"), f"a3-{read[0][1]}"))
    assert body["type"] == ev.CANCELLED and body["data"]["via"] == "care" and body["at"] == 1000


def test_what_audit_entries_become() -> None:
    base = {"msisdn": "13800138000", "service": "VIDEO", "at": "5", "mo": "m1"}
    # a charge of a subscription cancelled this period keeps its state: a charge, not a cancellation
    charged = ev.from_audit("a1", "9-0", {**base, "old": "cancelled", "new": "cancelled", "reason": "charge",
                                          "ledger": "VIDEO:2026-12", "fen": "1500", "period": "2026-12"})
    assert charged is not None and charged.type == ev.CHARGED and charged.data["fen"] == 1500
    assert ev.from_audit("a1", "9-1", {**base, "old": "pending", "new": "active", "reason": "first_charge"}) is None
    api = ev.from_audit("a1", "9-2", {**base, "old": "active", "new": "cancelled", "reason": "admin", "mo": "api:care"})
    assert api is not None and api.data["via"] == "api"
    sms = ev.from_audit("a1", "9-3", {**base, "old": "pending", "new": "cancelled", "reason": "reply", "cancel": "free"})
    assert sms is not None and (sms.data["via"], sms.data["how"]) == ("sms", "free") and sms.id == "a1-9-3"
    order = ev.from_audit("a1", "9-4", {**base, "old": "none", "new": "pending", "reason": "order", "order_id": "O1", "due": "86400005"})
    assert order is not None and order.type == ev.REMINDED and order.data["first_charge_due"] == 86400005
    assert json.loads(order.body())["id"] == "a1-9-4"


# -- configuration ------------------------------------------------------------------------------------
def _check(tmp_path: Path, webhooks: list, env: dict | None = None) -> subprocess.CompletedProcess:
    raw = base_config("redis://127.0.0.1:1/0", tmp_path / "var")
    raw["webhooks"] = webhooks
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "config", "check"],
                          capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=60)


def test_config_errors_are_one_line_each(tmp_path: Path) -> None:
    res = _check(tmp_path, [{"name": "crm", "url": "ftp://crm", "events": ["subscription.canceled"], "secret_env": "CRM_HOOK_SECRET"}])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert any(line.startswith("  webhooks.0.url (line ") and "not an http:// or https:// URL" in line for line in lines), res.stderr
    assert any("webhooks.0.events" in line and "did you mean 'subscription.cancelled'?" in line for line in lines), res.stderr
    assert any("webhooks.0.secret_env" in line and "environment variable CRM_HOOK_SECRET is not set" in line for line in lines), res.stderr
    good = {"name": "crm", "url": "https://b.example/h", "events": ["*"], "secret": "0123456789abcdef"}
    twice = _check(tmp_path, [good, good])
    assert twice.returncode == 2 and "webhooks (line " in twice.stderr and "webhook name 'crm' used twice" in twice.stderr


def test_secret_from_the_environment(tmp_path: Path) -> None:
    hook = {"name": "crm", "url": "https://crm.example/h", "events": ["ticket.opened"], "secret_env": "CRM_HOOK_SECRET"}
    assert _check(tmp_path, [hook], {"CRM_HOOK_SECRET": "from-the-environment-1"}).returncode == 0
    raw = base_config("redis://127.0.0.1:1/0", tmp_path / "var")
    raw["webhooks"] = [hook]
    s = config.from_dict(raw, environ={"CRM_HOOK_SECRET": "from-the-environment-1"})
    assert s.webhooks[0].signing_secret() == "from-the-environment-1"
    assert "from-the-environment" not in repr(s.webhooks[0])
    short = _check(tmp_path, [hook], {"CRM_HOOK_SECRET": "short"})
    assert short.returncode == 2 and "must be 16 characters or more" in short.stderr


def test_a_reload_keeps_the_running_webhooks(make_settings) -> None:
    """SIGHUP: `webhooks` changes need a restart; the running endpoints stay (README: Webhooks)."""

    old = make_settings(webhooks=[endpoint("http://127.0.0.1:9/a", ["*"])])
    new = make_settings(webhooks=[endpoint("http://127.0.0.1:9/b", ["ticket.opened"])])
    plan = plan_reload(old, new)
    assert "webhooks" in plan.restart or any(k.startswith("webhooks") for k in plan.restart), plan.restart
    assert plan.settings.webhooks == old.webhooks
