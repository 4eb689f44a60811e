"""``python -m bench.profile``: where one smsbot run's work goes, per MO — a profile anyone can rerun.

One fresh Redis + ``smsbot run`` against the load SMSC (`bench.sut`, `bench.load_smsc`), one
workload at one window, then a summary per MO from the sources that do not depend on how busy the
machine is:

* **Redis commands** — ``INFO commandstats`` before and after: calls and µs per MO for each command
  (a script's inner commands count in both its own row and EVALSHA's µs), the total (the bench's
  ``cmd/MO``);
* **what one MO sends** (``--monitor N``) — ``MONITOR`` while the run goes, the commands of N MO
  scripts printed as Redis executed them (inner commands indented under their EVALSHA);
* **the bot's Python** (``--cprofile FILE``) — the bot runs under cProfile (the SMPP loop is the
  main thread): the top functions by own time, and calls per MO of the hot-path steps;
* **syscalls** (``--strace``) — ``strace -c -f`` attached to the bot for the run: calls per MO
  (select, send, recv towards the SMSC and Redis);
* **CPU** — the bot (user and kernel), its Redis and the load SMSC from /proc, in µs per MO and %
  of one core, and the rest: with a window, a batch is a round through three processes on two
  cores, so what no process spends on CPU is time waiting for one of the others;
* **the budget** (``--baseline``) — the bare smpplib loop (`bench.baseline_smpplib`) against the
  same load SMSC at the same window, its CPU per MO the same way, and what a rate of ``--target``
  times it leaves smsbot: the wall time per MO, and the CPU per MO the three processes may spend
  together if the machine stays as busy as in smsbot's run (at window 1 the round is serial: the
  machine is about one core busy, so the CPU per MO of bot, Redis and load SMSC add up to the wall).

Examples::

    python -m bench.profile --window 10 --messages 3000 --monitor 2
    python -m bench.profile --window 1 --messages 2000 --cprofile /tmp/bot.prof --strace
    python -m bench.profile --window 10 --json /tmp/profile.json
    python -m bench.profile --window 1 --messages 10000 --baseline --target 0.8

Throughput on a shared machine is noise; command counts, script µs and calls per MO are not.
"""

from __future__ import annotations

import argparse
import json
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.sut import (SEED_SERVICES, proc_cpu_seconds, proc_cpu_split, redis_client, start_baseline, start_smsbot,
                       system_busy_seconds)

_LUA_CLIENT = re.compile(r"\[\d+ lua\]")  # MONITOR's mark of a command a script ran


def commandstats_delta(before: dict[str, Any], after: dict[str, Any], mos: int, own_info: int = 1) -> dict[str, Any]:
    """Calls and µs per MO of each command between two ``INFO all`` snapshots (our own INFO
    calls, `own_info` of them, taken out), and the total calls per MO."""
    per: dict[str, dict[str, float]] = {}
    total = 0
    for k, v in after.items():
        if not (k.startswith("cmdstat_") and isinstance(v, dict)):
            continue
        b = before.get(k) or {}
        calls = v.get("calls", 0) - b.get("calls", 0) - (own_info if k == "cmdstat_info" else 0)
        if calls <= 0:
            continue
        usec = v.get("usec", 0) - b.get("usec", 0)
        per[k[len("cmdstat_"):]] = {"calls_per_mo": round(calls / mos, 3), "usec_per_mo": round(usec / mos, 2),
                                    "usec_per_call": round(usec / calls, 2)}
    total = after.get("total_commands_processed", 0) - before.get("total_commands_processed", 0) - own_info
    return {"commands_per_mo": round(total / mos, 3), "by_command": dict(sorted(per.items(), key=lambda kv: -kv[1]["calls_per_mo"]))}


class Monitor:
    """MONITOR on its own connection in a thread: the lines Redis reports, kept in order."""

    def __init__(self, url: str, limit: int = 20_000):
        self.lines: list[str] = []
        self.limit = limit
        self._conn = redis_client(url).connection_pool.get_connection()
        self._conn.send_command("MONITOR")
        self._conn.read_response()  # OK
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.lines) < self.limit:
            try:
                if self._conn.can_read(timeout=0.1):
                    line = self._conn.read_response()
                    self.lines.append(line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line))
            except Exception:  # noqa: BLE001 - the server went away at the end of the run
                break

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(2)
        try:
            self._conn.disconnect()
        except Exception:  # noqa: BLE001
            pass
        return self.lines


def mo_samples(lines: list[str], n: int) -> list[list[str]]:
    """N groups of MONITOR lines: an EVALSHA of an MO script and the inner commands after it (the
    ones reported from the 'lua' client), taken from the middle of the run."""
    groups: list[list[str]] = []
    current: list[str] | None = None
    for line in lines:
        body = re.sub(r"^\S+ \[\d+ [^\]]+\] ", "", line)
        if _LUA_CLIENT.search(line.split('"', 1)[0]):
            if current is not None:
                current.append("    " + body)
            continue
        if current is not None:
            groups.append(current)
            current = None
        if body.startswith('"EVALSHA"'):
            current = [body[:200] + (" ..." if len(body) > 200 else "")]
        else:
            groups.append([body[:200] + (" ..." if len(body) > 200 else "")])
    if current is not None:
        groups.append(current)
    mid = len(groups) // 2
    picked: list[list[str]] = []
    for g in groups[mid:]:
        picked.append(g)
        if sum(1 for p in picked if p[0].startswith('"EVALSHA"') and len(p) > 3) >= n:
            break
    return picked


_START_UP = re.compile(r"importlib|/yaml/|/pydantic|/click/|/typing\.py|/enum\.py|/dataclasses\.py|/re/|"
                       r"builtins\.(compile|exec|__build_class__)|marshal\.loads|_thread\.lock")


def cprofile_summary(path: Path, mos: int, top: int = 25) -> dict[str, Any]:
    """The bot's functions by own time per MO; start-up (imports, config, schema building) and
    the thread joins at exit left out: the loop's work remains."""
    st = pstats.Stats(str(path))
    rows = []
    for (file, line, name), (cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        if _START_UP.search(f"{file}:{name}"):
            continue
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls_per_mo": round(nc / mos, 3),
                     "own_us_per_mo": round(tt * 1e6 / mos, 2), "cum_us_per_mo": round(ct * 1e6 / mos, 2)})
    rows.sort(key=lambda r: -r["own_us_per_mo"])
    return {"top_own_time": rows[:top]}


def strace_summary(text: str, mos: int) -> dict[str, Any]:
    """`strace -c` table -> calls per MO and µs per MO per syscall."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.match(r"^\d+\.\d+$", parts[0]) and parts[-1] != "total":
            calls = int(parts[3])
            out[parts[-1]] = {"calls_per_mo": round(calls / mos, 3), "seconds": float(parts[1])}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["calls_per_mo"]))


def run(workload: str, window: int, messages: int, subscribers: int, *, monitor: int = 0,
        cprofile: Path | None = None, strace: bool = False, time_limit: float = 60.0) -> dict[str, Any]:
    from bench.load_smsc import WORKLOADS, LoadSmsc

    workdir = Path(tempfile.mkdtemp(prefix="smsprofile-"))
    smsc = LoadSmsc()
    handle = None
    tracer = None
    mon = None
    out: dict[str, Any] = {"workload": workload, "window": window, "messages": messages, "subscribers": subscribers}
    try:
        handle = start_smsbot(smsc.port, workdir, subscribers=subscribers, check=False, profile_to=cprofile,
                              wait_bound=lambda h: smsc.wait_bound(30.0, alive=h.alive))
        smsc.run_until(lambda: False, 0.2)
        r = redis_client(handle.redis_url)
        # warm-up: the bot's first MOs load caches; the profile is of the steady state
        smsc.run(WORKLOADS[workload], window, min(200, messages), subscribers, time_limit=time_limit)
        if strace:
            if shutil.which("strace") is None:
                out["strace_error"] = "strace is not installed"
            else:
                tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(handle.pid), "-o", str(workdir / "strace.txt")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
        if monitor:
            mon = Monitor(handle.redis_url)
        info0 = r.info("all")
        redis_pid = handle.redis_proc.pid if handle.redis_proc is not None else None
        bot0 = proc_cpu_split(handle.pid)
        cpu0 = (sum(bot0) if bot0 else None, proc_cpu_seconds(redis_pid) if redis_pid else None, time.process_time(),
                system_busy_seconds())
        stats = smsc.run(WORKLOADS[workload], window, messages, subscribers, time_limit=time_limit)
        bot1 = proc_cpu_split(handle.pid)
        cpu1 = (sum(bot1) if bot1 else None, proc_cpu_seconds(redis_pid) if redis_pid else None, time.process_time(),
                system_busy_seconds())
        info1 = r.info("all")
        r.close()
        lines = mon.stop() if mon is not None else []
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
            out["syscalls"] = strace_summary((workdir / "strace.txt").read_text(errors="replace"), stats.sent)
        summary = stats.summary()
        out["run"] = {k: summary[k] for k in ("mo_mt_per_s", "p50_ms", "p99_ms", "mos_sent", "mos_completed", "mos_lost")}
        out["redis"] = commandstats_delta(info0, info1, stats.sent)
        wall = stats.t_end - stats.t_first if stats.t_first else 0.0
        if wall > 0 and stats.sent:
            names = ("bot", "redis", "load_smsc", "machine_busy")
            cpu = {}
            for i, name in enumerate(names):
                if cpu0[i] is not None and cpu1[i] is not None:
                    cpu[name] = {"us_per_mo": round((cpu1[i] - cpu0[i]) * 1e6 / stats.sent, 1),
                                 "pct_of_core": round(100 * (cpu1[i] - cpu0[i]) / wall, 1)}
            if bot0 is not None and bot1 is not None and "bot" in cpu:
                cpu["bot"]["user_us_per_mo"] = round((bot1[0] - bot0[0]) * 1e6 / stats.sent, 1)
                cpu["bot"]["kernel_us_per_mo"] = round((bot1[1] - bot0[1]) * 1e6 / stats.sent, 1)
            cpu["wall_us_per_mo"] = round(wall * 1e6 / stats.sent, 1)
            out["cpu"] = cpu
        if monitor:
            out["monitor_sample"] = mo_samples(lines, monitor)
    finally:
        if tracer is not None and tracer.poll() is None:
            tracer.kill()
        if handle is not None:
            handle.stop(pump=smsc.pump)
        smsc.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if cprofile is not None and cprofile.exists() and out.get("run"):
        out["python"] = cprofile_summary(cprofile, out["run"]["mos_sent"] + min(200, messages))
    return out


def script_time(calls: int = 5000, subscribers: int = 2000, rounds: int = 5) -> dict[str, Any]:
    """The MO step alone: `calls` EVALSHA of workload (a)'s 0000 (built by the real Dispatcher for a
    sender holding its lease), pipelined 100 at a time into a fresh Redis, each hundred then
    recorded and its guards' watermark written as the bot would, `rounds` times; ``INFO commandstats`` per round. Redis's µs per call are the script's own time (its inner
    commands included), not time spent waiting: the median round is the figure to compare."""
    import statistics

    from bench.sut import start_redis, write_config
    from commands import all_commands
    from smsbot import connections
    from smsbot.config import load as load_config
    from smsbot.dispatch import Dispatcher
    from smsbot.identity import SenderIdentity
    from smsbot.live import Live
    from smsbot.messages import Inbound
    from smsbot.router import Router

    workdir = Path(tempfile.mkdtemp(prefix="smsscript-"))
    proc = None
    try:
        proc, url = start_redis(workdir)
        settings = load_config(write_config(workdir, 1, url))
        store = connections.open_store(settings)
        store.load_scripts()
        live = Live(settings, Router(settings, all_commands()))
        base = 13900000000
        for i in range(subscribers):  # three subscriptions each, as `bench.sut` seeds them: a 2-part menu
            for service in SEED_SERVICES.split(","):
                store.run_one(store.mo_call("subscriptions.admin_subscribe", str(base + i), "10086",
                                            args={"service": service}, now_ms=1))
        sender = SenderIdentity("profile", tuple(store.keys.lease_prefix(n) for n in range(store.keys.shards)))
        store.roundtrip([("SET", k, "profile", "PX", 600_000) for k in sender.lease_keys])
        dispatcher = Dispatcher(live, store)
        rounds_out = []
        seq = batches = 0
        for _ in range(rounds):
            r = redis_client(url)
            r.config_resetstat()
            done = 0
            while done < calls:
                mos = []
                for _ in range(min(100, calls - done)):
                    seq += 1
                    mos.append(Inbound(sequence=seq, msisdn=str(base + seq % subscribers), short_code="10086",
                                       text="0000", user_message_reference=seq & 0xFFFF))
                batches += 1  # numbered as the bot does; the hundred before's resps were read (its watermark)
                result = dispatcher.handle(mos, sender, number=batches, mark=batches - 1)
                assert all(oc.outcome == "menu_sent" for oc in result.outcomes), result.outcomes[:1]
                done += len(mos)
                # as the bot goes on: the replies sent and recorded, the resps read (the guards' watermark written)
                store.roundtrip([*store.ack_commands([(stream, eid) for stream, eid, _f in result.entries]),
                                 ("HSET", store.keys.marks(0), sender.token, batches)])
            info = r.info("commandstats")
            r.close()
            rounds_out.append({name[len("cmdstat_"):]: {"calls_per_mo": round(v["calls"] / calls, 3), "usec_per_call": v["usec_per_call"]}
                               for name, v in info.items() if name != "cmdstat_config" and name != "cmdstat_info"})
        ev = sorted(r["evalsha"]["usec_per_call"] for r in rounds_out)
        return {"calls": calls, "rounds": rounds, "evalsha_usec_per_call_median": statistics.median(ev),
                "evalsha_usec_per_call_rounds": ev, "commands_median_round": rounds_out[sorted(
                    range(rounds), key=lambda i: rounds_out[i]["evalsha"]["usec_per_call"])[rounds // 2]]}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def baseline(workload: str, window: int, messages: int, subscribers: int, time_limit: float = 60.0) -> dict[str, Any]:
    """The bare smpplib loop against a fresh load SMSC, same workload and window: its rate and the CPU
    per MO of the loop (user, kernel) and of the load SMSC, measured as `run` measures smsbot's."""
    from bench.load_smsc import WORKLOADS, LoadSmsc

    workdir = Path(tempfile.mkdtemp(prefix="smsprofile-base-"))
    smsc = LoadSmsc()
    handle = None
    try:
        handle = start_baseline(smsc.port, workdir)
        smsc.wait_bound(30.0, alive=handle.alive)
        smsc.run(WORKLOADS[workload], window, min(200, messages), subscribers, time_limit=time_limit)  # warm-up
        loop0, smsc0, busy0 = proc_cpu_split(handle.pid), time.process_time(), system_busy_seconds()
        stats = smsc.run(WORKLOADS[workload], window, messages, subscribers, time_limit=time_limit)
        loop1, smsc1, busy1 = proc_cpu_split(handle.pid), time.process_time(), system_busy_seconds()
    finally:
        if handle is not None:
            handle.stop(pump=smsc.pump)
        smsc.close()
        shutil.rmtree(workdir, ignore_errors=True)
    wall = stats.t_end - stats.t_first if stats.t_first else 0.0
    if loop0 is None or loop1 is None or not stats.sent or wall <= 0:
        raise RuntimeError(f"the baseline run measured nothing ({stats.sent} MOs sent)")
    per_mo = 1e6 / stats.sent
    user, kernel = (loop1[0] - loop0[0]) * per_mo, (loop1[1] - loop0[1]) * per_mo
    return {"mo_mt_per_s": stats.summary()["mo_mt_per_s"],
            "cpu": {"smpplib": {"us_per_mo": round(user + kernel, 1), "user_us_per_mo": round(user, 1),
                                "kernel_us_per_mo": round(kernel, 1)},
                    "load_smsc": {"us_per_mo": round((smsc1 - smsc0) * per_mo, 1)},
                    "machine_busy": {"us_per_mo": round((busy1 - busy0) * per_mo, 1)},
                    "wall_us_per_mo": round(wall * per_mo, 1)}}


def budget(p: dict[str, Any], target: float) -> dict[str, Any]:
    """What `target` times the baseline's rate leaves smsbot (`p`: a `run` with its ``baseline``):
    the wall per MO, and the CPU per MO of the three processes together at smsbot's run's busyness."""
    cpu, base = p["cpu"], p["baseline"]
    wall_needed = 1e6 / (target * base["mo_mt_per_s"])
    busy_cores = cpu["machine_busy"]["us_per_mo"] / cpu["wall_us_per_mo"]
    spent = sum(cpu[name]["us_per_mo"] for name in ("bot", "redis", "load_smsc") if name in cpu)
    return {"target": target, "ratio_now": round(p["run"]["mo_mt_per_s"] / base["mo_mt_per_s"], 2),
            "wall_us_per_mo": round(wall_needed, 1), "busy_cores": round(busy_cores, 2),
            "cpu_us_per_mo_allowed": round(wall_needed * busy_cores, 1), "cpu_us_per_mo_now": round(spent, 1)}


def _cpu_lines(cpu: dict[str, Any]) -> list[str]:
    """A run's CPU per MO, a line per process (its % of one core and user/kernel split when measured), then the wall."""
    lines = []
    for name, v in cpu.items():
        if isinstance(v, dict):
            pct = f"  {v['pct_of_core']:5.1f}%" if "pct_of_core" in v else ""
            split = f"  (user {v['user_us_per_mo']:.1f}, kernel {v['kernel_us_per_mo']:.1f})" if "user_us_per_mo" in v else ""
            lines.append(f"  {name:13s} {v['us_per_mo']:8.1f} µs{pct}{split}")
    lines.append(f"  wall          {cpu['wall_us_per_mo']:8.1f} µs per MO")
    return lines


def format_summary(p: dict[str, Any]) -> str:
    lines = [f"workload {p['workload']}, window {p['window'] or 'inf'}: {p['run']['mos_sent']:,} MOs, "
             f"{p['run']['mo_mt_per_s']}/s (under contention: do not compare), p50 {p['run']['p50_ms']} ms"]
    red = p["redis"]
    lines.append(f"\nRedis: {red['commands_per_mo']} commands per MO")
    for name, v in red["by_command"].items():
        lines.append(f"  {name:12s} {v['calls_per_mo']:7.3f}/MO  {v['usec_per_mo']:7.2f} µs/MO  {v['usec_per_call']:6.2f} µs/call")
    if "cpu" in p:
        lines.append("\nCPU per MO (µs; % of one core):")
        lines.extend(_cpu_lines(p["cpu"]))
    if p.get("baseline"):
        base = p["baseline"]
        lines.append(f"\nbaseline (bare smpplib loop, same load SMSC and window): {base['mo_mt_per_s']}/s")
        lines.extend(_cpu_lines(base["cpu"]))
        b = p["budget"]
        lines.append(f"\nbudget for {b['target']}x the baseline (now {b['ratio_now']}x): {b['wall_us_per_mo']} µs wall per MO; "
                     f"at this run's {b['busy_cores']} cores busy, {b['cpu_us_per_mo_allowed']} µs of CPU per MO for "
                     f"bot, Redis and load SMSC together (now {b['cpu_us_per_mo_now']})")
    if p.get("syscalls"):
        lines.append("\nsyscalls of the bot per MO:")
        for name, v in list(p["syscalls"].items())[:10]:
            lines.append(f"  {name:14s} {v['calls_per_mo']:7.3f}")
    if p.get("python"):
        lines.append("\nbot Python, top own time (µs per MO, start-up left out):")
        for row in p["python"]["top_own_time"][:15]:
            lines.append(f"  {row['own_us_per_mo']:7.2f} own {row['cum_us_per_mo']:8.2f} cum {row['calls_per_mo']:7.3f} calls  {row['function']}")
    if p.get("monitor_sample"):
        lines.append("\nMONITOR, commands around MO scripts mid-run:")
        for g in p["monitor_sample"]:
            lines.extend("  " + x for x in g)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", default="a", help="a, b or c (default a)")
    ap.add_argument("--window", type=int, default=10, help="MOs outstanding at once, 0 = unbounded (default 10)")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--monitor", type=int, default=0, metavar="N", help="print the Redis commands of N MO scripts")
    ap.add_argument("--cprofile", type=Path, metavar="FILE", help="run the bot under cProfile, write the stats to FILE")
    ap.add_argument("--strace", action="store_true", help="count the bot's syscalls (strace -c -f)")
    ap.add_argument("--baseline", action="store_true", help="also run the bare smpplib loop the same way, and print "
                    "the budget --target leaves smsbot")
    ap.add_argument("--target", type=float, default=1.0, help="the rate to budget for, times the baseline's (default 1.0)")
    ap.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    ap.add_argument("--script-only", action="store_true", help="no SMSC, no bot process: the MO step's own µs "
                    "per call in Redis (5 rounds of 5,000 0000s, median)")
    args = ap.parse_args(argv)
    if args.script_only:
        res = script_time()
        print(json.dumps(res, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1), encoding="utf-8")
        return 0
    from bench.load_smsc import WORKLOADS

    if args.workload not in WORKLOADS:
        ap.error(f"unknown workload {args.workload!r}; known: {', '.join(WORKLOADS)}")
    if args.window < 0 or args.messages < 1 or args.subscribers < 1:
        ap.error("--window must be >= 0, --messages and --subscribers >= 1")
    if args.target <= 0:
        ap.error("--target must be > 0 (e.g. 0.8 for 0.8x the baseline)")
    p = run(args.workload, args.window, args.messages, args.subscribers, monitor=args.monitor,
            cprofile=args.cprofile.absolute() if args.cprofile else None, strace=args.strace)
    if args.baseline and "cpu" in p:
        try:
            p["baseline"] = baseline(args.workload, args.window, args.messages, args.subscribers)
        except (RuntimeError, TimeoutError) as e:  # e.g. smpplib not installed: the baseline never binds
            print(format_summary(p))
            print(f"error: the baseline run failed ({e}); it needs the test extras: pip install -e '.[test]'",
                  file=sys.stderr)
            return 1
        p["budget"] = budget(p, args.target)
    print(format_summary(p))
    if args.json:
        Path(args.json).write_text(json.dumps(p, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
