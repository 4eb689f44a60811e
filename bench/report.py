"""Turning measurements into the benchmark's output: result rows, the printed table, the JSON file.

This module owns the output contract. `python -m bench --json FILE` writes a JSON *list* with one
object per (workload, window) throughput run, one object for the fixed-load latency run
(``kind: "latency"``, ``offered_per_s: 1000``) and, in full mode, one for the memory soak
(``kind: "soak"``). Every object has at least::

    kind, workload, window, offered_per_s,
    mo_mt_per_s, baseline_mo_mt_per_s, ratio,
    p50_ms, p95_ms, p99_ms, peak_rss_mb, redis_cmds_per_mo

(smsbot figures at the top level, ``None`` when smsbot was not run or failed; the baseline's own
figures are repeated under ``baseline_*``; ``error`` / ``baseline_error`` say why a side has no
figures). Soak objects add ``messages``, ``rss_10k_mb``, ``rss_end_mb`` and
``rss_flat_within_10pct`` (again with ``baseline_`` twins).

Meaning of the headline figures:

* ``mo_mt_per_s``: matched MO→MT round trips / (last matching submit_sm − first deliver_sm);
* ``p50_ms`` ...: deliver_sm sent → first submit_sm part to that subscriber received;
* ``peak_rss_mb``: the bot process's VmHWM at the end of the run (each run is a fresh process);
* ``redis_cmds_per_mo``: delta of Redis ``total_commands_processed`` over the run / MOs sent.
  Redis counts the commands a Lua script runs as well as the EVALSHA itself;
  ``redis_commandstats_per_mo`` breaks it down per command, ``redis_usec_per_mo`` gives Redis's own
  CPU time per MO inside each command (Redis's ``usec``; a script's inner commands are counted both
  in their own line and in the EVALSHA's).

Diagnostics per side: ``mos_sent/completed/rejected/lost``, ``deliver_sm_resp(_errors)``,
``submit_sm``, ``extra_parts`` (parts 2.. of multi-part replies), ``unmatched_submit_sm``,
``max_outstanding``, ``cpu_pct`` / ``redis_cpu_pct`` / ``load_smsc_cpu_pct`` / ``other_cpu_pct``
(% of one core during the run), ``ended_by`` (done / time limit / drain timeout / bind lost).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# figures copied from a target's measurement into a row (smsbot unprefixed, baseline prefixed)
_SIDE_FIELDS = (
    "mo_mt_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "peak_rss_mb", "rss_10k_mb", "rss_end_mb",
    "rss_flat_within_10pct", "redis_cmds_per_mo", "redis_commandstats_per_mo", "redis_usec_per_mo",
    "redis_used_memory_mb",
    "mos_sent", "mos_completed", "mos_rejected", "mos_lost", "deliver_sm_resp", "deliver_sm_resp_errors",
    "submit_sm", "extra_parts", "unmatched_submit_sm", "max_outstanding", "elapsed_s", "achieved_per_s", "cpu_pct", "load_smsc_cpu_pct",
    "redis_cpu_pct", "other_cpu_pct", "loadavg_1m_before", "ended_by", "runs_mo_mt_per_s",
    "error",
)


def percentile(sorted_values, q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted sequence."""
    n = len(sorted_values)
    if n == 0:
        return None
    k = max(0, min(n - 1, math.ceil(q / 100.0 * n) - 1))
    return sorted_values[k]


def make_row(kind: str, workload: str, description: str, window: int, offered_per_s: float | None,
             smsbot: dict[str, Any] | None, baseline: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": kind,
        "workload": workload,
        "workload_desc": description,
        "window": window,
        "offered_per_s": offered_per_s,
    }
    for f in _SIDE_FIELDS:
        row[f] = (smsbot or {}).get(f)
    if smsbot is None:
        row["error"] = "not run (--only baseline)"
    for f in _SIDE_FIELDS:
        row["baseline_" + f] = (baseline or {}).get(f)
    if baseline is None:
        row["baseline_error"] = "not run (--only smsbot)"
    a, b = row["mo_mt_per_s"], row["baseline_mo_mt_per_s"]
    row["ratio"] = round(a / b, 3) if a and b else None
    row.update(extra)
    # keep the contract's headline keys first
    head = ["kind", "workload", "window", "offered_per_s", "mo_mt_per_s", "baseline_mo_mt_per_s", "ratio",
            "p50_ms", "p95_ms", "p99_ms", "peak_rss_mb", "redis_cmds_per_mo"]
    row.setdefault("protocol", "smpp")  # the link protocol of the load SMSC, smsbot and the baseline
    return {k: row[k] for k in head} | {k: v for k, v in row.items() if k not in head}


def _fmt(v: Any, spec: str = ",.0f") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, (int, float)):
        return format(v, spec)
    return str(v)


def _sum(*vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def _max(*vals):
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


NOISY_OTHER_CPU_PCT = 25.0


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("wl", lambda r: r["workload"] + ("" if r.get("protocol", "smpp") == "smpp" else f" {r['protocol']}")
                         + ("" if r.get("durability", "os") == "os" else f" {r['durability']}")),
        ("win", lambda r: "inf" if r["window"] == 0 else str(r["window"])),
        ("load/s", lambda r: _fmt(r["offered_per_s"]) if r["offered_per_s"] else "max"),
        ("smsbot/s", lambda r: _fmt(r["mo_mt_per_s"])),
        ("base/s", lambda r: _fmt(r["baseline_mo_mt_per_s"])),
        ("ratio", lambda r: _fmt(r["ratio"], ".2f")),
        ("p50ms", lambda r: _fmt(r["p50_ms"], ".2f")),
        ("p95ms", lambda r: _fmt(r["p95_ms"], ".2f")),
        ("p99ms", lambda r: _fmt(r["p99_ms"], ".2f")),
        ("b.p50", lambda r: _fmt(r["baseline_p50_ms"], ".2f")),
        ("b.p95", lambda r: _fmt(r["baseline_p95_ms"], ".2f")),
        ("b.p99", lambda r: _fmt(r["baseline_p99_ms"], ".2f")),
        ("rssMB", lambda r: _fmt(r["peak_rss_mb"], ".1f")),
        ("b.rssMB", lambda r: _fmt(r["baseline_peak_rss_mb"], ".1f")),
        ("cmd/MO", lambda r: _fmt(r["redis_cmds_per_mo"], ".2f")),
        ("cpu%", lambda r: _fmt(_sum(r.get("cpu_pct"), r.get("redis_cpu_pct")))),
        ("b.cpu%", lambda r: _fmt(r.get("baseline_cpu_pct"))),
        ("smsc%", lambda r: _fmt(_max(r.get("load_smsc_cpu_pct"), r.get("baseline_load_smsc_cpu_pct")))),
        ("oth%", lambda r: _fmt(_max(r.get("other_cpu_pct"), r.get("baseline_other_cpu_pct")))),
        ("lost", lambda r: "/".join(_fmt(r.get(k), "d") for k in ("mos_lost", "baseline_mos_lost"))),
    ]
    header = [c[0] for c in cols]
    body = [[fn(r) for _, fn in cols] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r, b in zip(rows, body):
        tag = {"latency": "  (fixed load)", "soak": "  (soak)"}.get(r["kind"], "")
        if (_max(r.get("other_cpu_pct"), r.get("baseline_other_cpu_pct")) or 0) > NOISY_OTHER_CPU_PCT:
            tag += "  (noisy: other processes busy)"
        lines.append("  ".join(c.rjust(w) for c, w in zip(b, widths)) + tag)
    notes = []
    for r in rows:
        where = f"{r['kind']} {r['workload']}/win {r['window']}"
        if r["kind"] == "soak":
            for side, p in (("smsbot", ""), ("baseline", "baseline_")):
                if r.get(p + "rss_end_mb") is not None:
                    notes.append(f"{where}: {side} {r.get(p + 'mos_completed')} MO->MT, RSS at 10k "
                                 f"{_fmt(r.get(p + 'rss_10k_mb'), '.1f')} MB, at end {_fmt(r.get(p + 'rss_end_mb'), '.1f')} MB, "
                                 f"flat within 10%: {_fmt(r.get(p + 'rss_flat_within_10pct'))}")
        for side, key in (("smsbot", "error"), ("baseline", "baseline_error")):
            err = r.get(key)
            if err and not str(err).startswith("not run"):
                notes.append(f"{where}: {side} error: {err}")
    # one copy of each distinct error is enough
    seen: set[str] = set()
    uniq = []
    for n in notes:
        key = n.split(": ", 1)[1]
        if key not in seen:
            seen.add(key)
            uniq.append(n)
    legend = ("columns: smsbot figures unprefixed, baseline as b.*; win inf = unbounded; cpu% = smsbot + its "
              "Redis, % of one core (2 cores); smsc% = the load SMSC; oth% = everything else on the machine")
    return "\n".join(lines + ["", legend] + ([""] + uniq if uniq else []))


def write_json(path: str | Path, rows: list[dict[str, Any]]) -> None:
    Path(path).write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
