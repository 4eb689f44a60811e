"""The benchmark harness still runs: a few seconds of `python -m bench` at tiny sizes.

Not a measurement (figures on a shared CI machine mean nothing, and no assertion is made on
them): it proves the load SMSC, the baseline, smsbot under load, the fixed-rate latency run and the
JSON report fit together, so that the README's benchmark command keeps working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROW_FIELDS = ("workload", "window", "mo_mt_per_s", "baseline_mo_mt_per_s", "ratio", "p50_ms", "p95_ms", "p99_ms",
              "peak_rss_mb", "redis_cmds_per_mo")


def test_quick_benchmark_runs_and_writes_every_field(tmp_path: Path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--workloads", "b", "--windows", "10", "--subscribers", "50",
         "--messages", "300", "--latency-seconds", "1", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = json.loads(out.read_text())
    throughput = [r for r in rows if r["kind"] == "throughput"]
    latency = [r for r in rows if r.get("offered_per_s") == 1000]
    assert len(throughput) == 1 and len(latency) == 1, rows
    row = throughput[0]
    assert row.get("error") is None and row.get("baseline_error") is None, row
    for name in ROW_FIELDS:
        assert row.get(name) is not None, f"{name} missing: {row}"
    # every MO was answered on both sides; conversations cost one script call per MO (the records
    # of sent replies are plain XDELs; the delivery worker's adoption scans run a few scripts)
    assert row["mos_completed"] == row["mos_sent"] == 300 and row["baseline_mos_completed"] == 300
    assert 1.0 <= row["redis_commandstats_per_mo"]["evalsha"] < 1.2
    assert latency[0]["mos_lost"] == 0 and latency[0]["p99_ms"] is not None


def test_profile_with_baseline_writes_both_sides_and_the_budget(tmp_path: Path):
    """`python -m bench.profile --baseline`: smsbot's and the bare smpplib loop's CPU per MO (user and
    kernel apart), and the budget `--target` leaves smsbot, worked out from the two runs' own figures."""
    out = tmp_path / "profile.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--window", "1", "--messages", "300", "--subscribers", "50",
         "--baseline", "--target", "0.8", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "budget for 0.8x the baseline" in res.stdout
    p = json.loads(out.read_text())
    bot, base = p["cpu"]["bot"], p["baseline"]
    assert bot["user_us_per_mo"] + bot["kernel_us_per_mo"] == pytest.approx(bot["us_per_mo"], abs=0.2)
    smpplib = base["cpu"]["smpplib"]
    assert smpplib["us_per_mo"] > 0 and base["mo_mt_per_s"] > 0
    b = p["budget"]
    assert b["wall_us_per_mo"] == pytest.approx(1e6 / (0.8 * base["mo_mt_per_s"]), rel=1e-3)
    assert b["cpu_us_per_mo_allowed"] == pytest.approx(b["wall_us_per_mo"] * b["busy_cores"], rel=0.02)
    spent = sum(p["cpu"][n]["us_per_mo"] for n in ("bot", "redis", "load_smsc"))
    assert b["cpu_us_per_mo_now"] == pytest.approx(spent, abs=0.2)
    assert b["ratio_now"] == pytest.approx(p["run"]["mo_mt_per_s"] / base["mo_mt_per_s"], abs=0.01)


def test_profile_refuses_a_target_of_zero():
    res = subprocess.run([sys.executable, "-m", "bench.profile", "--baseline", "--target", "0"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--target must be > 0" in res.stderr and "Traceback" not in res.stderr


def test_profile_says_in_one_line_when_the_baseline_cannot_run(tmp_path: Path):
    """Without smpplib (the test extras) the baseline process dies before binding: smsbot's profile is
    still printed, then one line saying what failed and what to install; exit 1, no traceback."""
    broken = tmp_path / "smpplib"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('smpplib is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--window", "1", "--messages", "100", "--subscribers", "20", "--baseline"],
        cwd=REPO, capture_output=True, text=True, timeout=240, env=env,
    )
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "CPU per MO" in res.stdout and "budget" not in res.stdout
    assert "the baseline run failed (the ESME process exited before binding)" in res.stderr
    assert "pip install -e '.[test]'" in res.stderr and "Traceback" not in res.stderr
