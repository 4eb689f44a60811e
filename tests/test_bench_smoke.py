"""The benchmark harness still runs: a few seconds of `python -m bench` at tiny sizes.

Not a measurement (figures on a shared CI machine mean nothing, and no assertion is made on
them): it proves the load SMSC, the baseline, smsbot under load, the fixed-rate latency run and the
JSON report fit together, so that the README's benchmark command keeps working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
