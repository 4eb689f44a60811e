"""The benchmark's CMPP rows still run: `python -m bench --protocols cmpp3,cmpp2` at tiny sizes.

Not a measurement (no assertion on the figures): it proves the CMPP load SMSC (`bench.load_ismg`),
the CMPP baseline (`bench.baseline_cmpp`) and smsbot over CMPP fit together in the report, with the
same fields as the SMPP rows (tests/test_bench_smoke.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_cmpp_rows_for_both_versions(tmp_path: Path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--protocols", "cmpp3,cmpp2", "--workloads", "b", "--windows", "10",
         "--subscribers", "50", "--messages", "300", "--latency-seconds", "0", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["protocol"] for r in rows] == ["cmpp3", "cmpp2"]
    for row in rows:
        assert row.get("error") is None and row.get("baseline_error") is None, row
        assert row["mos_completed"] == row["mos_sent"] == 300 and row["baseline_mos_completed"] == 300, row
        assert row["mo_mt_per_s"] and row["baseline_mo_mt_per_s"] and row["p99_ms"] is not None, row
        assert 1.0 <= row["redis_commandstats_per_mo"]["evalsha"] < 1.2  # one script per MO, as over SMPP
    assert "b cmpp3" in res.stdout and "b cmpp2" in res.stdout  # the table names the protocol
