"""``python -m bench.chaos [--quick] [--json FILE] [--only abcdefghij] [options]``

Runs the chaos scenarios of issues 11 and 22 one after another (each with its own Redis, chaos SMSC and
bots; see `bench.chaos.runner`), prints one JSON row per scenario on stdout as it finishes,
progress and a summary table on stderr, and with ``--json`` writes everything to FILE (after
each scenario, so a partial run keeps what it measured; rows of scenarios this run did not measure
that FILE already holds are kept, each row's ``run`` says which run it comes from). (h), (i), (j)
run on Redis nodes of their own (`bench.chaos.nodes`): Sentinel, Cluster, Sentinel; (h) with
``redis.durability: replica`` unless ``--set redis.durability=os``. Exit code 0 when every target of every
scenario held, 1 when any failed, 2 on a usage error.

Full mode: 20,000 subscribers at 800 MO/s, 15 s of traffic, two bots, ``smsc.window`` 10. About
25 s for a scenario without a crash, 35-45 s with one: a killed bot's unsent and unacknowledged
replies are only adopted by the others once its heartbeat expires (15 s), so crash scenarios wait
20 s after the last crash to count copies that arrive that late (and (f) up to 40 s while order
events a dead bot had read wait for their 30 s claim). The whole run takes about 4-5 minutes.
``--quick``: 1,000 subscribers at 400 MO/s, 2 s of traffic, 4 s after a crash: a smoke run whose
crash figures can undercount late copies.

Options: ``--subscribers``, ``--rate``, ``--traffic``, ``--bots``, ``--window``, ``--orders``,
``--crash-settle`` change the sizes; ``--drop-mode abort`` resets links instead of closing them
cleanly (see `bench.chaos.smsc`); ``--set section.key=VALUE`` overrides the bots' config,
``--bot-env SMSBOT_X=V`` their environment; ``--keep`` keeps each scenario's temp dir (config,
bot logs, Redis AOF). To measure another smsbot tree (e.g. an older commit exported with ``git
archive``): ``CHAOS_SMSBOT_CMD="env PYTHONPATH=/tmp/old python -m smsbot.cli"
CHAOS_BASE_CONFIG=/tmp/old/config.yaml``.

Row keys: mos (distinct MOs sent), unanswered (MOs without their reply at the end), unacked,
replies, replies_twice (whole replies beyond one per MO, see `bench.chaos.smsc`), submits_twice
(submit_sm received again: duplicate parts and the parts of duplicate replies/reminders),
wrong_replies (a reply other than the model predicted), double_effects / lost_effects /
state_mismatch / menu_mismatch (Redis against the model), billing_errors (missing, extra, wrong
amount, charge audit entries != 1 per charge), reminders / reminders_twice / reminders_missing,
crashes (bot kill -9 + Redis kill -9; the allowance is window x crashes), link_drops, redeliveries,
temp_errors, settled (everything arrived before the deadline), duplicates_at (when copies
arrived), timeline, phases_s, bot_log, targets and failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from bench.chaos.runner import FULL, QUICK, SCENARIOS, environment, run_scenario, summary_table


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what} wants KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[1])
    ap.add_argument("--quick", action="store_true", help="small and short (smoke)")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    ap.add_argument("--only", default="".join(SCENARIOS), help="scenarios to run, e.g. abd (default all)")
    ap.add_argument("--subscribers", type=int)
    ap.add_argument("--rate", type=float, help="MO/s")
    ap.add_argument("--traffic", type=float, help="seconds of MO traffic")
    ap.add_argument("--bots", type=int)
    ap.add_argument("--orders", type=int, help="order events in (f) and (g)")
    ap.add_argument("--window", type=int, help="smsc.window of the bots (default 10)")
    ap.add_argument("--crash-settle", type=float, help="seconds to wait after the last crash")
    ap.add_argument("--drop-mode", choices=("clean", "abort"), help="how links are dropped (default clean)")
    ap.add_argument("--protocol", choices=("smpp", "cmpp3", "cmpp2"), help="the link protocol of the SMSC and the bots (default smpp)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (configs, logs, AOF)")
    ap.add_argument("--bot-env", action="append", default=[], metavar="SMSBOT_X=V", help="extra env for smsbot")
    ap.add_argument("--set", action="append", default=[], metavar="section.key=V",
                    help="config override (YAML value), e.g. --set smsc.window=20")
    a = ap.parse_args(argv)
    bad = set(a.only) - set(SCENARIOS)
    if bad:
        ap.error(f"unknown scenario(s) {''.join(sorted(bad))}; known: {''.join(SCENARIOS)}")
    sizes = QUICK if a.quick else FULL
    for attr, val in (("subscribers", a.subscribers), ("rate", a.rate), ("traffic_s", a.traffic), ("bots", a.bots),
                      ("window", a.window), ("crash_settle_s", a.crash_settle), ("orders", a.orders), ("drop_mode", a.drop_mode),
                      ("protocol", a.protocol)):
        if val is not None:
            sizes = sizes.scaled(**{attr: val})
    import yaml

    overrides: dict[str, Any] = {k: yaml.safe_load(v) for k, v in _kv(a.set, "--set").items()}
    bot_env = _kv(a.bot_env, "--bot-env")

    def on_term(signum: int, frame: Any) -> None:  # children are stopped by the finally blocks
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    doc: dict[str, Any] = {"mode": "quick" if a.quick else "full", "environment": environment(),
                           "sizes": sizes.__dict__, "overrides": overrides, "bot_env": bot_env, "scenarios": []}
    t0 = time.monotonic()
    for name in a.only:
        row = run_scenario(name, sizes, keep=a.keep, bot_env=bot_env, overrides=overrides,
                           progress=lambda s: print(s, file=sys.stderr, flush=True))
        row["run"] = {"mode": doc["mode"], "commit": doc["environment"].get("commit"), "sizes": doc["sizes"],
                      "overrides": overrides}
        doc["scenarios"].append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        if a.json_path:
            _write(a.json_path, doc)
    doc["total_s"] = round(time.monotonic() - t0, 1)
    doc["failed"] = {r["scenario"]: r["failed"] for r in doc["scenarios"] if r.get("failed")}
    if a.json_path:
        _write(a.json_path, doc)
    print(summary_table(doc["scenarios"]), file=sys.stderr)
    return 1 if doc["failed"] else 0


def _row_key(row: dict[str, Any]) -> tuple[str, str]:
    return row.get("scenario", ""), row.get("durability", "os")


def _write(path: str, doc: dict[str, Any]) -> None:
    """Write `doc`, keeping the rows of another run already in FILE whose scenario (and durability)
    this run did not measure: each row says in ``run`` which run it comes from (rows of the
    original a-g runs: the file's own mode, environment and sizes)."""
    try:
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
    except (OSError, ValueError):
        before = {}
    mine = {_row_key(r) for r in doc["scenarios"]}
    kept = [r for r in before.get("scenarios", []) if _row_key(r) not in mine]
    for r in kept:  # a row from before rows said their run: the file's own
        r.setdefault("run", {"mode": before.get("mode"), "commit": (before.get("environment") or {}).get("commit"),
                             "sizes": before.get("sizes"), "overrides": before.get("overrides")})
    if kept:
        doc = {**doc, "scenarios": [*kept, *doc["scenarios"]]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
