"""Billing runs that are killed, stopped or overlapped: leases, resume, supersede, `billing runs`.

Real `smsbot billing run` processes against the session's real redis-server: one killed with
kill -9 halfway through thousands of subscribers is resumed by the next run once its lease has
expired (same run, same time, from its checkpoint), and afterwards every due charge is in the
ledger exactly once (`billing verify`, the ledger and the audit stream agree).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from smsbot import admin, billing, config
from .helpers import wait_until
from smsbot.connections import open_store
from smsbot.periods import period_of, zone

from .conftest import REPO

FIRST = "13700000000"


def write_cfg(settings: config.Settings, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
    return path


def smsbot(cfg: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def start_run(cfg: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "smsbot.cli", "--config", str(cfg), "billing", "run", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def runs(store: Any) -> dict[str, billing.RunRecord]:
    return {r.id: r for r in billing.list_runs(store)}


def wait_for_progress(store: Any, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> billing.RunRecord:
    """The run's record once it has checkpointed `at_least` subscribers (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [r for r in billing.list_runs(store) if r.state == "running"]
        if live and int(live[0].raw.get("subscribers") or 0) >= at_least:
            return live[0]
        assert proc.poll() is None, f"billing run ended before it could be stopped: {proc.communicate()}"
        time.sleep(0.005)  # poll interval of a condition awaited (the run's progress; it must be caught mid-way)
    raise AssertionError("the billing run made no progress")


def all_charges(store: Any, numbers: list[str]) -> dict[str, set[str]]:
    pipe = store.redis.pipeline(transaction=False)
    for m in numbers:
        pipe.hkeys(store.keys.ledger(m))
    return {m: {k.decode() for k in keys} for m, keys in zip(numbers, pipe.execute())}


def charge_audits(store: Any) -> list[tuple[str, str]]:
    out = []
    for stream in store.keys.all_audits():
        for _id, f in store.redis.xrange(stream):
            if f.get(b"reason") == b"charge":
                out.append((f[b"msisdn"].decode(), f[b"ledger"].decode()))
    return out


def seeded(make_settings: Callable[..., config.Settings], count: int) -> tuple[config.Settings, list[str]]:
    settings = make_settings()
    assert admin.seed(settings, FIRST, count, ["VIDEO", "MUSIC"]) == 2 * count
    return settings, [str(int(FIRST) + i) for i in range(count)]


def test_run_killed_with_kill9_is_resumed_and_every_charge_is_there_once(make_settings, tmp_path):
    settings, numbers = seeded(make_settings, 5000)
    cfg = write_cfg(settings, tmp_path)
    store = open_store(settings)
    try:
        proc = start_run(cfg, "--batch", "10", "--lease-seconds", "2")
        try:
            rec = wait_for_progress(store, proc, 500)
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        killed = runs(store)[rec.id]
        assert killed.state == "running" and killed.cursor is not None  # its lease has not expired yet
        assert wait_until(lambda: runs(store)[rec.id].state == "abandoned", 5), "the lease of a killed run must expire"
        listed = smsbot(cfg, "billing", "runs")
        assert listed.returncode == 0 and f"{rec.id}\t" in listed.stdout and "\tabandoned\t" in listed.stdout

        again = smsbot(cfg, "billing", "run")
        assert again.returncode == 0, again.stderr
        assert f"resuming billing run {rec.id}" in again.stderr
        assert "Traceback" not in again.stderr
        after = runs(store)
        assert list(after) == [rec.id], "resumed, not a second run"
        done = after[rec.id]
        assert done.state == "finished" and done.resumed == 1 and done.at == rec.at

        # every subscriber charged for both services, once; one audit entry per charge; verify agrees
        p = period_of(rec.at, zone(settings.billing.timezone)).label
        charges = all_charges(store, numbers)
        missing = [m for m in numbers if charges[m] != {f"VIDEO:{p}", f"MUSIC:{p}"}]
        assert not missing, f"{len(missing)} subscribers without exactly their two charges, e.g. {missing[:3]}"
        audits = charge_audits(store)
        assert len(audits) == len(set(audits)) == 2 * len(numbers)
        ver = smsbot(cfg, "billing", "verify")
        assert ver.returncode == 0, ver.stdout + ver.stderr
        assert "ledger OK" in ver.stdout and "1 finished run(s)" in ver.stdout
        assert smsbot(cfg, "billing", "ledger", numbers[-1]).stdout.count(rec.id) == 2
        # a further run charges nothing and resumes nothing
        third = smsbot(cfg, "billing", "run")
        assert third.returncode == 0 and "resuming" not in third.stderr and "charged: 0 " in third.stdout
    finally:
        store.close()


def test_sigterm_interrupts_between_batches_and_the_next_run_resumes_at_once(make_settings, tmp_path):
    settings, numbers = seeded(make_settings, 3000)
    cfg = write_cfg(settings, tmp_path)
    store = open_store(settings)
    try:
        proc = start_run(cfg, "--batch", "10", "--lease-seconds", "600")
        try:
            rec = wait_for_progress(store, proc, 300)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1 and "resumes it" in err and "Traceback" not in err, err
        stopped = runs(store)[rec.id]
        assert stopped.state == "interrupted" and not stopped.lease_alive  # no 600 s wait for the lease
        again = smsbot(cfg, "billing", "run")
        assert again.returncode == 0 and f"resuming billing run {rec.id}" in again.stderr, again.stderr
        assert runs(store)[rec.id].state == "finished"
        p = period_of(rec.at, zone(settings.billing.timezone)).label
        assert all(c == {f"VIDEO:{p}", f"MUSIC:{p}"} for c in all_charges(store, numbers).values())
        assert billing.verify(settings, store).ok
    finally:
        store.close()


def test_a_live_run_is_overlapped_not_resumed_and_the_complete_run_supersedes_it(make_settings, tmp_path):
    settings, numbers = seeded(make_settings, 200)
    cfg = write_cfg(settings, tmp_path)
    store = open_store(settings)
    try:
        store.load_scripts()
        now = int(time.time() * 1000)
        # another process at work (lease alive), a quarter done
        other = billing.BillingRun(settings, store, now - 1000, lease_s=600)
        other.begin()
        subs = other.subscribers()
        other.bill(subs[:50])
        other.checkpoint(subs[49])
        res = smsbot(cfg, "billing", "run")
        assert res.returncode == 0, res.stderr
        assert f"run {other.run_id} of " in res.stderr and "overlaps it" in res.stderr and "resuming" not in res.stderr
        states = {r.id: r.state for r in billing.list_runs(store)}
        assert states.pop(other.run_id) == "superseded" and list(states.values()) == ["finished"]
        assert "superseded" in smsbot(cfg, "billing", "runs").stdout
        assert billing.verify(settings, store).ok
        assert len(charge_audits(store)) == 2 * len(numbers)
    finally:
        store.close()


def test_resume_keeps_the_runs_time_and_an_earlier_run_does_not_resume_a_later_one(make_settings):
    settings, numbers = seeded(make_settings, 30)
    store = open_store(settings)
    try:
        store.load_scripts()
        tz = zone(settings.billing.timezone)
        at = int(time.time() * 1000)
        killed = billing.BillingRun(settings, store, at, lease_s=1)
        killed.begin()
        subs = killed.subscribers()
        killed.bill(subs[:10])
        killed.checkpoint(subs[9])
        assert wait_until(lambda: runs(store)[killed.run_id].state == "abandoned", 5)
        # a run asked for an earlier time of the period is a new run; it does not supersede the later one
        start = period_of(at, tz).start_ms
        if start < at - 1000:
            early = billing.run(settings, store, at - 1000, batch=7)
            assert early.resumed_from is None and early.run_id != killed.run_id
            assert runs(store)[killed.run_id].state == "abandoned"
        later = billing.run(settings, store, at + 60_000, batch=7)
        assert later.run_id == killed.run_id and later.resumed_from == 10 and later.at_ms == at
        assert later.finished and later.subscribers == len(numbers)
        rec = runs(store)[killed.run_id]
        assert rec.state == "finished" and rec.at == at and rec.resumed == 1
        assert billing.verify(settings, store).ok
    finally:
        store.close()


def test_records_from_before_leases_are_abandoned_and_resumable(make_settings):
    """A run killed by an older smsbot (record with finished=None, no state, no lease) is resumed too."""
    settings, numbers = seeded(make_settings, 20)
    store = open_store(settings)
    try:
        store.load_scripts()
        at = int(time.time() * 1000)
        p = period_of(at, zone(settings.billing.timezone)).label
        store.redis.hset(store.keys.billing_runs(), "run-old", json.dumps({"period": p, "at": at, "started": at, "finished": None}))
        assert runs(store)["run-old"].state == "abandoned"
        summary = billing.run(settings, store, at + 1000)
        assert summary.run_id == "run-old" and summary.resumed_from == 0 and summary.charged == 2 * len(numbers)
        assert runs(store)["run-old"].state == "finished"
        assert billing.verify(settings, store).ok
    finally:
        store.close()
