"""``python -m bench``: run the benchmark plan and print/write the results.

This module owns the plan (which runs, in which order, with which sizes) and the per-run
lifecycle: fresh workdir and load SMSC, start the target (`bench.sut`), wait for the bind, read
Redis INFO, drive the workload (`bench.load_smsc`), read the target's RSS and CPU, stop
everything (always, in ``finally``), then hand the figures to `bench.report`.

Plan, for each selected workload x window: the baseline (fresh `bench.baseline_smpplib`
process) and smsbot (fresh Redis + seed + ``smsbot run``) in turn; then the fixed-load latency
run (workload a, 1,000 MO/s paced, unbounded window) for both; in full mode, finally the memory
soak (workload b, window 10, 1,000,000 MOs, RSS at 10k and at the end).

Sizes: ``--quick`` 2,000 subscribers, 6,000 MOs per run, 3 s latency run, no soak (about 50 s
in all); full 10,000 subscribers, 60,000 MOs per run, 10 s latency run, 1M-MO soak (about 10
minutes with ``--repeat 2``). Every run is bounded: sending stops after ``--time-limit`` seconds, outstanding MOs are
waited for at most 30 s more, an MO without reply after 30 s counts as lost.

Noise: the machine has 2 cores and is often shared. Each row records the CPU that other
processes took during the run (``other_cpu_pct``); the table flags rows where it exceeded 25%
of a core as noisy. ``--repeat N`` runs each throughput measurement N times and keeps the best.

smsbot is launched only through `bench.sut.start_smsbot`; ``BENCH_SMSBOT_CMD`` overrides the
command (default: the ``smsbot`` entry point next to this interpreter). When smsbot cannot start
(not installed yet, seeding fails, never binds), its rows carry the error and the remaining
smsbot runs are skipped; the baseline still runs.

Examples::

    python -m bench --quick --only baseline --json /tmp/b.json
    python -m bench --quick --json bench/results-quick.json
    python -m bench --json bench/results-full.json            # includes the 1M-MO soak
    python -m bench --workloads a --windows 10 --only smsbot --quick --keep-workdirs
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.sut import (ProcessHandle, SutError, check_smsbot_runnable, proc_cpu_seconds, proc_status, redis_client,
                       start_baseline, start_smsbot, system_busy_seconds)

QUICK = dict(subscribers=2_000, messages=6_000, time_limit=6.0, latency_seconds=3.0, soak_messages=0)
FULL = dict(subscribers=10_000, messages=60_000, time_limit=90.0, latency_seconds=10.0, soak_messages=1_000_000)
LATENCY_RATE = 1000.0
SOAK_WORKLOAD, SOAK_WINDOW, SOAK_MARK = "b", 10, 10_000
BIND_TIMEOUT = 30.0
DURABILITIES = ("os", "fsync", "replica")  # redis.durability
SETTLE_S = 0.1  # serve the fresh bind briefly (first enquire_link, consumers starting) before measuring


def _mb(kb: int | None) -> float | None:
    return round(kb / 1024.0, 1) if kb else None


def run_one(target: str, workload: str, window: int, *, messages: int, subscribers: int,
            rate: float | None = None, time_limit: float, mo_timeout: float = 30.0,
            soak: bool = False, keep: bool = False, protocol: str = "smpp", durability: str = "os") -> dict[str, Any]:
    """One target against one fresh load SMSC (`protocol`: smpp, or cmpp3 / cmpp2 with
    `bench.load_ismg`; `durability`: the bot's redis.durability). Never raises for target failures:
    returns ``{"error": ...}`` instead. Everything started here is stopped before returning."""
    from bench.load_ismg import CmppLoadSmsc
    from bench.load_smsc import WORKLOADS, LoadSmsc

    wl = WORKLOADS[workload]
    workdir = Path(tempfile.mkdtemp(prefix=f"smsbench-{target}-"))
    smsc = LoadSmsc() if protocol == "smpp" else CmppLoadSmsc(version=0x20 if protocol == "cmpp2" else 0x30)
    handle: ProcessHandle | None = None
    result: dict[str, Any] = {}
    try:
        def wait_bound(h: ProcessHandle) -> None:
            smsc.wait_bound(BIND_TIMEOUT, alive=h.alive)

        if target == "baseline":
            handle = start_baseline(smsc.port, workdir, protocol)
            try:
                wait_bound(handle)
            except Exception as e:  # noqa: BLE001
                raise SutError(f"baseline did not bind: {e}; log: {handle.log_tail(600)}") from None
        else:
            handle = start_smsbot(smsc.port, workdir, subscribers=subscribers, wait_bound=wait_bound, check=False,
                                  protocol=protocol, durability=durability)
        # let the target settle (first enquire_link, outbox consumers...) before measuring
        smsc.run_until(lambda: False, SETTLE_S)
        redis_url = getattr(handle, "redis_url", None)
        # one connection for both INFO calls: its setup commands fall before the first snapshot
        rconn = redis_client(redis_url) if redis_url else None
        info0 = rconn.info("all") if rconn is not None else None

        rss_marks: dict[str, int | None] = {}
        milestones = {}
        if soak:
            milestones[SOAK_MARK] = lambda: rss_marks.__setitem__("rss_10k", proc_status(handle.pid).get("VmRSS"))

        redis_proc = getattr(handle, "redis_proc", None)
        redis_pid = redis_proc.pid if redis_proc is not None else None

        def cpu_sample() -> tuple:
            return (proc_cpu_seconds(handle.pid), time.process_time(),
                    proc_cpu_seconds(redis_pid) if redis_pid else None, system_busy_seconds())

        with open("/proc/loadavg", encoding="ascii") as f:
            result["loadavg_1m_before"] = float(f.read().split()[0])
        cpu0 = cpu_sample()
        stats = smsc.run(wl, window, messages, subscribers, rate=rate, time_limit=time_limit,
                         mo_timeout=mo_timeout, milestones=milestones)
        cpu1 = cpu_sample()
        status = proc_status(handle.pid)
        info1 = rconn.info("all") if rconn is not None else None
        if rconn is not None:
            rconn.close()
        result.update(stats.summary())
        result["peak_rss_mb"] = _mb(status.get("VmHWM"))
        wall = stats.t_end - stats.t_first if stats.t_first else 0.0
        if wall > 0:
            # CPU use during the run, in % of one core (the machine has 2): the target, its Redis,
            # the load SMSC (must stay well below 100) and everything else on the machine
            # ("other": concurrent test suites etc.; a high value makes the run noisy)
            def pct(i: int) -> float | None:
                if cpu0[i] is None or cpu1[i] is None:
                    return None
                return round(100.0 * (cpu1[i] - cpu0[i]) / wall, 1)

            result["cpu_pct"], result["load_smsc_cpu_pct"] = pct(0), pct(1)
            result["redis_cpu_pct"], busy = pct(2), pct(3)
            if busy is not None:
                ours = sum(v or 0.0 for v in (result["cpu_pct"], result["load_smsc_cpu_pct"], result["redis_cpu_pct"]))
                result["other_cpu_pct"] = round(max(0.0, busy - ours), 1)
        if soak:
            result["rss_10k_mb"] = _mb(rss_marks.get("rss_10k"))
            result["rss_end_mb"] = _mb(status.get("VmRSS"))
            if result["rss_10k_mb"] and result["rss_end_mb"]:
                result["rss_flat_within_10pct"] = result["rss_end_mb"] <= 1.10 * result["rss_10k_mb"]
        if info0 is not None and info1 is not None and stats.sent:
            # our own first INFO is counted by the second one
            delta = info1["total_commands_processed"] - info0["total_commands_processed"] - 1
            result["redis_cmds_per_mo"] = round(delta / stats.sent, 3)
            per_cmd, usec_per_mo = {}, {}
            for k, v in info1.items():
                if k.startswith("cmdstat_") and isinstance(v, dict):
                    before = info0.get(k) or {}
                    calls = v.get("calls", 0) - before.get("calls", 0) - (1 if k == "cmdstat_info" else 0)
                    if calls > 0:
                        per_cmd[k[len("cmdstat_"):]] = round(calls / stats.sent, 3)
                        # Redis CPU inside the command (a script's inner commands count in both)
                        usec_per_mo[k[len("cmdstat_"):]] = round((v.get("usec", 0) - before.get("usec", 0)) / stats.sent, 2)
            result["redis_commandstats_per_mo"] = per_cmd
            result["redis_usec_per_mo"] = usec_per_mo
            result["redis_used_memory_mb"] = _mb(info1.get("used_memory", 0) // 1024)
        if not handle.alive():
            result["error"] = f"{target} exited during the run (code {handle.proc.returncode}); log: {handle.log_tail(600)}"
        elif stats.ended_by == "bind lost":
            result["error"] = f"{target} dropped the bind during the run; log: {handle.log_tail(600)}"
        elif not stats.completed:
            result["error"] = f"{target} answered no MO ({stats.sent} sent, {stats.resp} deliver_sm_resp, " \
                              f"{stats.submits} submit_sm); log: {handle.log_tail(600)}"
        if result.get("error"):
            result["mo_mt_per_s"] = result.get("mo_mt_per_s")  # keep partial figures, flagged by error
    except SutError as e:
        result["error"] = str(e)
        result["start_failed"] = True
    except Exception as e:  # noqa: BLE001 - a broken run must not take the whole benchmark down
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        try:
            if handle is not None:
                handle.stop(pump=smsc.pump)
        finally:
            smsc.close()
            if keep:
                result["workdir"] = str(workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="smsbot MO->MT benchmark against a load SMSC "
                                 "on loopback, with a bare smpplib baseline")
    ap.add_argument("--quick", action="store_true", help="small runs, under a minute in total; no soak")
    ap.add_argument("--json", metavar="FILE", help="write the result rows as a JSON list")
    ap.add_argument("--workloads", default="a,b,c", help="comma list of a,b,c (default all)")
    ap.add_argument("--windows", default="1,10,0", help="comma list; 0 = unbounded (default 1,10,0)")
    ap.add_argument("--only", choices=("baseline", "smsbot"), help="run one side only")
    ap.add_argument("--subscribers", type=int, help="distinct MSISDNs (default 2,000 quick / 10,000 full)")
    ap.add_argument("--messages", type=int, help="MOs per throughput run (default 6,000 quick / 60,000 full)")
    ap.add_argument("--latency-seconds", type=float, help="length of the 1,000 MO/s run (3 quick / 10 full; 0 skips)")
    ap.add_argument("--soak-messages", type=int, help="MOs in the memory soak (0 quick / 1,000,000 full; 0 skips)")
    ap.add_argument("--time-limit", type=float, help="max seconds of sending per run")
    ap.add_argument("--repeat", type=int, default=1, help="run each throughput measurement N times per side "
                    "(alternating) and keep the fastest; helps on a machine shared with other work")
    ap.add_argument("--durability", default="os", help="comma list of redis.durability modes os,fsync,replica "
                    "(default os): each mode other than os adds a smsbot row per workload and window (replica: "
                    "a replica of the bot's Redis on loopback, WAIT after each round trip that wrote)")
    ap.add_argument("--keep-workdirs", action="store_true", help="keep each run's workdir (configs, logs, AOF)")
    ap.add_argument("--protocols", default="smpp", help="comma list of smpp,cmpp3,cmpp2: the same plan over each "
                    "link protocol (CMPP rows: bench.load_ismg against smsbot and bench.baseline_cmpp)")
    args = ap.parse_args(argv)
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every run's finally stops its processes
    def on_sigterm(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: let the cleanup finish
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)

    p = dict(QUICK if args.quick else FULL)
    for k in ("subscribers", "messages", "latency_seconds", "soak_messages", "time_limit"):
        if getattr(args, k) is not None:
            p[k] = getattr(args, k)
    from bench.load_smsc import WORKLOADS

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; known: {', '.join(WORKLOADS)}")
    try:
        windows = [int(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        ap.error("--windows takes integers, e.g. 1,10,0")
    if any(w < 0 for w in windows):
        ap.error("windows must be >= 0")
    targets = ["baseline", "smsbot"] if args.only is None else [args.only]
    protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not protocols or set(protocols) - {"smpp", "cmpp3", "cmpp2"}:
        ap.error("--protocols takes smpp, cmpp3, cmpp2")
    durabilities = [d.strip() for d in args.durability.split(",") if d.strip()]
    if not durabilities or any(d not in DURABILITIES for d in durabilities):
        ap.error(f"--durability takes a comma list of {', '.join(DURABILITIES)}")

    smsbot_error: str | None = None  # set once smsbot cannot start: later smsbot runs are skipped
    if "smsbot" in targets:
        try:
            check_smsbot_runnable()
        except SutError as e:
            smsbot_error = str(e)
            print(f"NOTE: {smsbot_error}; smsbot rows will carry this error.", file=sys.stderr)

    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []

    def measure(kind: str, workload: str, window: int, repeat: int = 1, protocol: str = "smpp",
                sides_run: list[str] | None = None, **kw) -> dict[str, Any]:
        """Each target in turn (repeat times, alternating; the fastest run is kept)."""
        nonlocal smsbot_error
        kw.setdefault("time_limit", p["time_limit"])
        sides: dict[str, dict[str, Any] | None] = {"baseline": None, "smsbot": None}
        run_targets = sides_run if sides_run is not None else targets
        tries: dict[str, list[dict[str, Any]]] = {t: [] for t in run_targets}
        for _ in range(max(1, repeat)):
            for t in run_targets:
                if t == "smsbot" and smsbot_error:
                    tries[t].append({"error": smsbot_error})
                    continue
                t0 = time.monotonic()
                r = run_one(t, workload, window, keep=args.keep_workdirs, subscribers=p["subscribers"],
                            protocol=protocol, **kw)
                if t == "smsbot" and r.pop("start_failed", False):
                    smsbot_error = f"skipped: smsbot failed to start earlier ({r['error'].splitlines()[0]})"
                r.pop("start_failed", None)
                tries[t].append(r)
                print(f"  {kind:10s} {workload}/win {window if window else 'inf':>3} {protocol:5s} {t:8s} "
                      f"{'' if kw.get('durability', 'os') == 'os' else kw['durability'] + ' '}"
                      f"{(str(r.get('mo_mt_per_s')) + '/s') if r.get('mo_mt_per_s') else '-':>12}  "
                      f"p50 {r.get('p50_ms')} ms  p99 {r.get('p99_ms')} ms  ({time.monotonic() - t0:.1f}s)"
                      f"{'  ERROR: ' + r['error'].splitlines()[0][:160] if r.get('error') else ''}",
                      file=sys.stderr, flush=True)
        for t, rs in tries.items():
            ok = [r for r in rs if not r.get("error") and r.get("mo_mt_per_s")]
            best = max(ok, key=lambda r: r["mo_mt_per_s"]) if ok else rs[-1]
            if len(rs) > 1:
                best["runs_mo_mt_per_s"] = [r.get("mo_mt_per_s") for r in rs]
            sides[t] = best
        return sides

    for protocol in protocols:
        for w in workloads:
            for win in windows:
                for d in durabilities:
                    if d != "os" and "smsbot" not in targets:
                        continue
                    # the baseline keeps nothing: it runs once per workload and window, with the first mode
                    s = measure("throughput", w, win, repeat=args.repeat, messages=p["messages"], protocol=protocol,
                                durability=d, sides_run=targets if d == durabilities[0] else ["smsbot"])
                    rows.append(report.make_row("throughput", w, WORKLOADS[w].description, win, None,
                                                s["smsbot"], s["baseline"], subscribers=p["subscribers"],
                                                protocol=protocol, durability=d))
        if p["latency_seconds"] > 0:
            n = int(LATENCY_RATE * p["latency_seconds"])
            s = measure("latency", "a", 0, messages=n, rate=LATENCY_RATE, protocol=protocol)
            rows.append(report.make_row("latency", "a", WORKLOADS["a"].description, 0, LATENCY_RATE,
                                        s["smsbot"], s["baseline"], subscribers=p["subscribers"], protocol=protocol,
                                        duration_s=p["latency_seconds"]))
        if p["soak_messages"] > 0:
            n = p["soak_messages"]
            s = measure("soak", SOAK_WORKLOAD, SOAK_WINDOW, messages=n, soak=True, protocol=protocol,
                        **({"time_limit": max(p["time_limit"], n / 1000.0)}))
            rows.append(report.make_row("soak", SOAK_WORKLOAD, WORKLOADS[SOAK_WORKLOAD].description, SOAK_WINDOW, None,
                                        s["smsbot"], s["baseline"], subscribers=p["subscribers"], messages=n, protocol=protocol))

    print()
    print(report.format_table(rows))
    print(f"\n{len(rows)} rows in {time.monotonic() - t_start:.1f}s; subscribers {p['subscribers']:,}, "
          f"{p['messages']:,} MOs per throughput run; window = max MOs awaiting their deliver_sm_resp "
          f"or their first submit_sm (inf = unbounded)")
    if args.json:
        report.write_json(args.json, rows)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
