"""Chaos scenarios: start everything, inject faults on a timeline, wait for the dust, compare.

Each scenario is independent (its own temp dir, bundled Redis, chaos SMSC on a free loopback
port and `smsbot run` processes):

* ``a`` no faults;
* ``b`` every link dropped every `drop_every` s (0.5) for the whole traffic;
* ``c`` Redis SIGSTOPped for `redis_stop_s` (2 s), later kill -9 and restarted `restart_delay` (1 s)
  later (by the runner with ``smsbot redis start``, unless a bot already brought it back);
* ``d`` a bot kill -9, restarted 1 s later, twice (the second kill hits the next bot);
* ``e`` all of b, c and d together;
* ``f`` `orders` order events (one XADD pipeline to the orders stream, as the README documents),
  a bot kill -9 0.3 s after them, restarted 1 s later: charge reminders counted per subscriber;
* ``g`` orders past their grace and orders inside it, then ``smsbot billing run`` killed (kill -9)
  when about a third of the expected charges are written, then run again to the end.

A scenario: seed `subscribers` subscribers with VIDEO, MUSIC, NEWS (``smsbot subs seed``), start
the bots, bind, send MOs at `rate` for `traffic_s` while the timeline fires, stop generating, then
settle: wait until every MO is acknowledged and answered and every expected reminder arrived,
and at least `crash_settle_s` after the last crash (a killed instance's replies are adopted by
the others only after its heartbeat expires: copies sent twice arrive that late), at most
`settle_max_s` past that (and, while reminders are missing after a crash, up to `claim_wait_s`
after it: order events a dead bot had read are claimed by another after 30 s). ``settled`` in the
row says whether everything arrived before the deadline. Then the bots get SIGTERM, one ``smsbot billing run`` bills the period
(``g``: the killed run and its rerun), and the chaos SMSC's counts, Redis (subscriptions, audit
stream, open menus, ledger, order ids) and the model are compared.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import os
import platform
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

from bench.chaos import model as M
from bench.chaos.procs import REPO, ScenarioError, World, base_config_path, smsbot_command
from bench.chaos.ismg import ChaosIsmg
from bench.chaos.smsc import ChaosSmsc
from bench.chaos.state import RedisView

SUBSCRIBER_BASE = 13900000000
ORDER_BASE_F = 13700000000
ORDER_BASE_G = 13600000000
DAY_MS = 86_400_000


@dataclass
class Sizes:
    subscribers: int = 20_000
    rate: float = 800.0  # MO/s
    traffic_s: float = 15.0
    crash_settle_s: float = 20.0  # after the last crash (heartbeat TTL 15 s + adoption)
    settle_max_s: float = 10.0  # past the later of traffic end and crash settle
    quiet_s: float = 1.0  # no message for this long before ending
    orders: int = 2_000
    bots: int = 2
    window: int = 10  # smsc.window of the bots: the "one submit window" of the targets
    mo_window: int = 100  # unacknowledged deliver_sm per bind
    retry_delay: float = 1.0  # redelivery after a temporary error
    drop_every: float = 0.5
    drop_mode: str = "clean"  # or "abort": reset the socket (responses in flight lost, see bench.chaos.smsc)
    claim_wait_s: float = 40.0  # after a crash, while expected reminders are missing (dead consumers' order events are claimed after 30 s)
    redis_stop_s: float = 2.0
    restart_delay: float = 1.0
    billing: bool = True
    protocol: str = "smpp"  # or cmpp3 / cmpp2: the chaos SMSC speaks CMPP (bench.chaos.ismg), the bots too

    def scaled(self, **kw: Any) -> "Sizes":
        return replace(self, **kw)


FULL = Sizes()
QUICK = Sizes(subscribers=1_000, rate=400.0, traffic_s=2.0, crash_settle_s=4.0, settle_max_s=3.0, quiet_s=0.5,
              claim_wait_s=6.0, orders=200, retry_delay=0.5, redis_stop_s=1.0, restart_delay=0.5)

TITLES = {
    "a": "no faults",
    "b": "link dropped every {drop_every} s ({drop_mode})",
    "c": "Redis SIGSTOP {redis_stop_s} s, then kill -9 and restart",
    "d": "bot kill -9 twice, restarted {restart_delay} s later",
    "e": "all faults together",
    "f": "{orders} orders, bot kill -9 0.3 s after them",
    "g": "billing run kill -9 mid-run, then run again",
    "h": "Sentinel (primary, 2 replicas, 3 sentinels): primary kill -9 under load",
    "i": "Cluster (3 primaries + replicas): key-by-key slot migration, then a primary kill -9",
    "j": "every Redis node stopped and started again from its AOF",
}
TOPOLOGY = {"h": "sentinel", "i": "cluster", "j": "sentinel"}  # the others: the bundled server
SCENARIOS = tuple(TITLES)


class Timeline:
    """Fault events at offsets from the traffic start; an event may schedule more."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, str, Callable[[], None]]] = []
        self._n = itertools.count()
        self.t0 = 0.0
        self.log: list[tuple[float, str]] = []

    def at(self, offset: float, name: str, fn: Callable[[], None]) -> None:
        """At `offset` s after `start` (events placed before `start` wait for it)."""
        heapq.heappush(self.heap, (self.t0 + offset, next(self._n), name, fn))

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.heap = [(t + self.t0, n, name, fn) for t, n, name, fn in self.heap]
        heapq.heapify(self.heap)

    def after(self, delay: float, name: str, fn: Callable[[], None]) -> None:
        heapq.heappush(self.heap, (time.monotonic() + delay, next(self._n), name, fn))

    def due(self) -> None:
        now = time.monotonic()
        while self.heap and self.heap[0][0] <= now:
            _, _, name, fn = heapq.heappop(self.heap)
            self.log.append((round(now - self.t0, 2), name))
            fn()

    @property
    def pending(self) -> bool:
        return bool(self.heap)


@dataclass
class Faults:
    bot_kills: int = 0
    redis_kills: int = 0
    redis_stops: int = 0
    redis_restarted_by: list[str] = field(default_factory=list)
    bot_unplanned_exits: int = 0
    last_crash: float | None = None

    @property
    def crashes(self) -> int:
        return self.bot_kills + self.redis_kills


def base_config() -> dict[str, Any]:
    return yaml.safe_load(base_config_path().read_text(encoding="utf-8")) or {}


def catalogue() -> M.Catalogue:
    cfg = base_config()
    lang = "zh-CN"
    for sc in cfg.get("short_codes") or []:
        if str(sc.get("code")) == "10086":
            lang = sc.get("language") or lang
    return M.Catalogue(cfg.get("services") or [], lang)


def _wait(cond: Callable[[], bool], timeout: float, what: str, world: World | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    tail = ""
    if world is not None:
        tails = [f"bot{b.index}: {b.log_tail()}" for b in world.bots if b.log_tail()]
        tail = ("; logs:\n" + "\n".join(tails)) if tails else ""
    raise ScenarioError(f"timed out after {timeout}s waiting for {what}{tail}")


def run_scenario(name: str, sizes: Sizes = FULL, *, keep: bool = False, bot_env: dict[str, str] | None = None,
                 overrides: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one scenario; returns its row (keys: see the module doc of `bench.chaos.__main__`)."""
    if name not in TITLES:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    say = progress or (lambda s: None)
    started = time.monotonic()
    cat = catalogue()
    conv = M.ChaosConversation(cat)
    subscribers = [str(SUBSCRIBER_BASE + i) for i in range(sizes.subscribers)]
    gateway = ChaosSmsc
    if sizes.protocol != "smpp":  # the same SMSC over CMPP; the bots' window is smsc.cmpp.window there
        gateway = functools.partial(ChaosIsmg, version=0x20 if sizes.protocol == "cmpp2" else 0x30)  # type: ignore[assignment]
        overrides = {"smsc.protocol": sizes.protocol, "smsc.cmpp.window": sizes.window, **(overrides or {})}
    smsc = gateway(subscribers, conv, rate=sizes.rate, mo_window=sizes.mo_window, retry_delay=sizes.retry_delay,
                   drop_mode=sizes.drop_mode)
    port = smsc.start()
    overrides = dict(overrides or {})
    if name == "h":  # the failover scenario is about what `replica` durability keeps (--set redis.durability=os: what os loses)
        overrides.setdefault("redis.durability", "replica")
    topology = TOPOLOGY.get(name, "bundled")
    try:
        world = World(port, window=sizes.window, bot_env=bot_env, keep=keep, overrides=overrides, topology=topology)
    except BaseException:
        smsc.stop()
        raise
    faults = Faults()
    tl = Timeline()
    orders: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    row: dict[str, Any] = {"scenario": name, "title": TITLES[name].format(**asdict(sizes)), "topology": topology,
                           "durability": str(world.config["redis"].get("durability") or "os")}
    try:
        say(f"[{name}] redis + seed {sizes.subscribers} subscribers")
        world.redis_start()
        seed_wall_ms = int(time.time() * 1000)
        world.cli("subs", "seed", "--from", str(SUBSCRIBER_BASE), "--count", str(sizes.subscribers),
                  "--services", ",".join(M.SEED_CODES), timeout=600)
        world.start_bots(sizes.bots)
        _wait(lambda: smsc.progress()["bound"] >= sizes.bots, 60, f"{sizes.bots} bot(s) to bind", world)
        say(f"[{name}] bound; traffic {sizes.rate:g} MO/s for {sizes.traffic_s:g} s")
        phases = {"setup": round(time.monotonic() - started, 1)}

        # -- the fault timeline ------------------------------------------------------------------
        T = sizes.traffic_s

        def kill_bot(i: int) -> Callable[[], None]:
            def fn() -> None:
                b = world.bots[i % len(world.bots)]
                if b.alive():
                    b.kill9()
                    faults.bot_kills += 1
                    faults.last_crash = time.monotonic()
                tl.after(sizes.restart_delay, f"restart bot{b.index}", b.start)
            return fn

        redis_pid: dict[str, int | None] = {}
        helpers: list[threading.Thread] = []

        def redis_stop() -> None:
            pid = world.redis_pid(timeout=0.5) or world.last_redis_pid
            redis_pid["stopped"] = pid
            if world.signal_redis(pid, signal.SIGSTOP):
                faults.redis_stops += 1
            tl.after(sizes.redis_stop_s, "redis SIGCONT", lambda: world.signal_redis(redis_pid["stopped"], signal.SIGCONT))

        def redis_kill() -> None:
            pid = world.redis_pid(timeout=0.5) or world.last_redis_pid
            if world.signal_redis(pid, signal.SIGKILL):
                faults.redis_kills += 1
                faults.last_crash = time.monotonic()
            tl.after(sizes.restart_delay, "redis restart", redis_restart)

        def redis_restart() -> None:
            # in a thread: `smsbot redis start` can take seconds (AOF loading on a busy machine), and
            # the timeline must not wait for it
            def work() -> None:
                if world.redis_alive():
                    faults.redis_restarted_by.append("bot")
                    world.redis_pid()
                    return
                try:
                    world.redis_start()
                    faults.redis_restarted_by.append("runner")
                except ScenarioError as e:
                    faults.redis_restarted_by.append(f"failed: {e}"[:200])

            t = threading.Thread(target=work, name="redis-restart", daemon=True)
            t.start()
            helpers.append(t)

        def drops(on: bool) -> Callable[[], None]:
            return lambda: smsc.set_drop_every(sizes.drop_every if on else None)

        def place_orders(base: int, n: int, code: str, at_ms: int, tag: str) -> Callable[[], None]:
            def fn() -> None:
                stream = f"{world.prefix}:events:orders"
                p = world.redis.pipeline(transaction=False)
                for i in range(n):
                    o = {"order_id": f"chaos-{tag}-{i}", "msisdn": str(base + i), "service": code, "at": str(at_ms)}
                    orders.append(o)
                    p.xadd(stream, o)
                p.execute()
                extra.setdefault("orders_placed_at", []).append(round(time.monotonic() - tl.t0, 2))
            return fn

        if name in ("b", "e"):
            tl.at(0.0, "drops on", drops(True))
            tl.at(T, "drops off", drops(False))
        if name == "c":
            tl.at(0.15 * T, "redis SIGSTOP", redis_stop)
            tl.at(max(0.55 * T, 0.15 * T + sizes.redis_stop_s + 0.3), "redis kill -9", redis_kill)
        if name == "d":
            tl.at(0.2 * T, "kill bot0", kill_bot(0))
            tl.at(0.5 * T, "kill bot1", kill_bot(1))
        if name == "e":
            tl.at(0.12 * T, "kill bot0", kill_bot(0))
            tl.at(0.25 * T, "redis SIGSTOP", redis_stop)
            tl.at(max(0.55 * T, 0.25 * T + sizes.redis_stop_s + 0.3), "redis kill -9", redis_kill)
            tl.at(max(0.75 * T, 0.25 * T + sizes.redis_stop_s + sizes.restart_delay + 0.6), "kill bot1", kill_bot(1))
        if name == "f":
            now_ms = int(time.time() * 1000)
            tl.at(0.25 * T, "orders", place_orders(ORDER_BASE_F, sizes.orders, "GAME", now_ms, "f"))
            tl.at(0.25 * T + 0.3, "kill bot0", kill_bot(0))
        if name == "g":
            now_ms = int(time.time() * 1000)
            half = sizes.orders // 2
            tl.at(0.1 * T, "orders past grace", place_orders(ORDER_BASE_G, half, "VIDEO", now_ms - 2 * DAY_MS, "gb"))
            tl.at(0.1 * T, "orders in grace", place_orders(ORDER_BASE_G + half, sizes.orders - half, "READ", now_ms, "gc"))

        # -- Redis nodes of our own (h, i, j: issue 22) ----------------------------------------------
        nodes = world.nodes

        promoted_at: list[float] = []  # when the topology named the new primary (time.monotonic)
        walls: dict[str, float] = {}  # wall-clock times of the phases (bot logs and SMSC refusals are matched by them)

        def kill_primary(port: int) -> Callable[[], None]:
            def fn() -> None:
                assert nodes is not None
                nodes.kill9(port)
                walls["kill"] = time.time()
                faults.redis_kills += 1
                faults.last_crash = killed_at = time.monotonic()

                def promoted() -> None:  # when the topology names another primary for what `port` served
                    while time.monotonic() - killed_at < 60:
                        if _took_over(world, port):
                            promoted_at.append(time.monotonic())
                            extra["promoted_after_s"] = round(promoted_at[-1] - killed_at, 2)
                            return
                        time.sleep(0.05)

                t = threading.Thread(target=promoted, name="promotion-watch", daemon=True)
                t.start()
                helpers.append(t)
            return fn

        def migrate() -> None:
            from redis.crc import key_slot

            from bench.chaos.nodes import migrate_slot

            def work() -> None:
                source, target = world.primaries[0], world.primaries[1]
                t0 = time.monotonic()
                walls["migration_start"] = time.time()
                try:
                    rc = world.client()
                    slots = sorted({key_slot(f"{{{n}}}".encode()) for n in range(world.shards)
                                    if rc.get_node_from_key(f"{{{n}}}").port == source})
                    moved = sum(migrate_slot(slot, source, target, world.primaries) for slot in slots)
                    rc.close()
                    extra["migration"] = {"slots": len(slots), "keys": moved, "seconds": round(time.monotonic() - t0, 2)}
                except Exception as e:  # noqa: BLE001 - in the row, not lost in a thread
                    extra["migration"] = {"error": f"{e!r}: {e}"[:300]}
                walls["migration_end"] = time.time()

            t = threading.Thread(target=work, name="slot-migration", daemon=True)
            t.start()
            helpers.append(t)
            migration.append(t)

        migration: list[threading.Thread] = []

        def kill_after_migration(port: int) -> Callable[[], None]:
            """The primary kill once the migration is over (at most until 90% of the traffic), so
            that what each costs is told apart (`refused_by_phase` in the row)."""
            def fn() -> None:
                def work() -> None:
                    for t in migration:
                        t.join(max(0.0, tl.t0 + 0.9 * T - time.monotonic()))
                    extra["kill_after_migration"] = not any(t.is_alive() for t in migration)
                    tl.log.append((round(time.monotonic() - tl.t0, 2), "cluster primary kill -9"))
                    kill_primary(port)()

                t = threading.Thread(target=work, name="kill-after-migration", daemon=True)
                t.start()
                helpers.append(t)
            return fn

        def all_nodes_down_and_up() -> None:
            assert nodes is not None
            nodes.stop()
            faults.redis_stops += 1
            faults.last_crash = stopped_at = time.monotonic()

            def up() -> None:  # on the timeline's own thread: a node's PDEATHSIG follows the thread that started it
                data = [p for p in nodes.by_port if p not in world.sentinels]
                try:
                    for p in [*data, *world.sentinels]:
                        nodes.restart(p)
                    extra["restarted_after_s"] = round(time.monotonic() - stopped_at, 2)
                except Exception as e:  # noqa: BLE001 - in the row
                    extra["restart_error"] = f"{e!r}: {e}"[:300]

            tl.after(sizes.restart_delay, "every Redis node started again", up)

        if name == "h":
            tl.at(0.4 * T, "sentinel primary kill -9", kill_primary(world.primaries[0]))
        if name == "i":
            tl.at(0.1 * T, "slot migration", migrate)
            tl.at(0.6 * T, "cluster primary kill -9 once the migration is over", kill_after_migration(world.primaries[2]))
        if name == "j":
            tl.at(0.4 * T, "every Redis node stopped", all_nodes_down_and_up)

        def supervise() -> None:
            for b in world.bots:
                if b.proc is not None and not b.alive() and not b.planned_exit:
                    faults.bot_unplanned_exits += 1
                    b.planned_exit = True
                    tl.after(1.0, f"restart bot{b.index} after unplanned exit", b.start)

        # -- traffic ------------------------------------------------------------------------------
        tl.start()
        walls["traffic_start"] = time.time()
        smsc.start_traffic()
        while time.monotonic() < tl.t0 + T:
            tl.due()
            supervise()
            time.sleep(0.02)
        smsc.stop_traffic()
        traffic_end = time.monotonic()
        walls["traffic_end"] = time.time()
        say(f"[{name}] traffic done; settling")

        # -- settle -------------------------------------------------------------------------------
        expected_reminders = {(o["msisdn"], cat.name(o["service"])) for o in orders}
        settled = False
        while True:
            tl.due()
            supervise()
            now = time.monotonic()
            min_end = traffic_end + sizes.quiet_s
            if faults.last_crash is not None:
                min_end = max(min_end, faults.last_crash + sizes.crash_settle_s)
            hard_end = max(traffic_end, min_end - sizes.quiet_s) + sizes.settle_max_s
            p = smsc.progress()
            reminders_in = smsc.call(lambda: sum(1 for k in expected_reminders if k in smsc.reminders))
            if reminders_in < len(expected_reminders) and faults.last_crash is not None:
                hard_end = max(hard_end, faults.last_crash + sizes.claim_wait_s)
            done = (p["waiting"] == 0 and p["inflight"] == 0 and p["redeliver_queued"] == 0
                    and reminders_in >= len(expected_reminders) and not tl.pending
                    and not any(t.is_alive() for t in helpers))
            idle = p["idle_s"] is None or p["idle_s"] >= sizes.quiet_s
            if done and idle and now >= min_end:
                settled = True
                break
            if now >= hard_end and not tl.pending and not any(t.is_alive() for t in helpers):
                break
            time.sleep(0.1)
        settle_s = time.monotonic() - traffic_end
        if promoted_at and isinstance(smsc, ChaosSmsc):  # SMPP binds name their bot (system_type)
            # "serves again within 10 s of the promotion": each bot's first MO acknowledged after it
            firsts = smsc.first_acks_after(promoted_at[-1], [b.name for b in world.bots])
            extra["served_again_s"] = {n: None if t is None else round(t - promoted_at[-1], 2) for n, t in firsts.items()}
        say(f"[{name}] settled={settled} after {settle_s:.1f} s; stopping bots")
        t_stop = time.monotonic()
        for b in world.bots:
            b.stop(timeout=15)
        phases["stop_bots"] = round(time.monotonic() - t_stop, 1)
        res = smsc.results()
        t_bill = time.monotonic()

        # -- billing ------------------------------------------------------------------------------
        run_times: list[int] = []
        billing_info: dict[str, Any] = {}
        if name == "g":
            billing_info = _killed_billing(world, sizes, orders, run_times, say, name)
        elif sizes.billing:
            run_times.append(int(time.time() * 1000))
            world.cli("billing", "run", timeout=600)

        # -- compare -----------------------------------------------------------------------------
        phases["billing"] = round(time.monotonic() - t_bill, 1)
        t_cmp = time.monotonic()
        say(f"[{name}] comparing with the model")
        order_msisdns = [o["msisdn"] for o in orders]
        view = RedisView(world.redis, world.prefix, world.shards, subscribers + order_msisdns)
        conv_rep = M.compare_conversations(cat, res["subscribers"], view)
        orders_cfg = (world.config.get("commands") or {}).get("orders") or {}  # the orders command's settings
        grace_ms = int((orders_cfg.get("grace_seconds") or {}).get("monthly", 86400)) * 1000
        order_states = {}
        if run_times:
            for o in orders:
                at = int(o["at"])
                if at + grace_ms <= min(run_times):
                    order_states[o["msisdn"]] = "active"
        ord_rep = M.compare_orders(orders, view, expect_state=order_states)
        bill_rep = None
        if run_times:
            incs = []
            for m in subscribers:
                mos = res["subscribers"].get(m, [])
                sm = M.replay(cat, mos) if mos else None
                for code in M.SEED_CODES:
                    k = sm.cancel_mo.get(code) if sm else None
                    lo = hi = None
                    if k is not None:
                        lo, hi = int(mos[k][4] * 1000), int((mos[k][5] or time.time()) * 1000)
                    incs.append(M.Incarnation(m, code, seed_wall_ms, lo, hi))
            for o in orders:
                incs.append(M.Incarnation(o["msisdn"], o["service"], int(o["at"]) + grace_ms))
            tz = str((world.config.get("billing") or {}).get("timezone") or "Asia/Shanghai")
            want, maybe = M.expected_charges(incs, run_times, tz, cat)
            bill_rep = M.compare_ledger(want, maybe, subscribers + order_msisdns, view)

        # -- the row -----------------------------------------------------------------------------
        phases["compare"] = round(time.monotonic() - t_cmp, 1)
        t = res["totals"]
        rem = res["reminders"]
        rem_keys = {(k[0], k[1]) for k in rem}
        reminders_twice = sum(n - 1 for n in rem.values() if n > 1)
        row.update({
            "subscribers": sizes.subscribers, "rate": sizes.rate, "traffic_s": sizes.traffic_s, "bots": sizes.bots,
            "window": sizes.window,
            "mos": t["mos"], "acked": t["acked"], "unanswered": t["unanswered"], "unacked": t["unacked"],
            "replies": t["replies"], "replies_twice": t["replies_twice"], "submits_twice": t["submits_twice"],
            "replies_twice_redelivered": t["replies_twice_redelivered"],
            "redelivered_copy_submits": t["redelivered_copy_submits"],
            "wrong_replies": t["wrong_replies"],
            "double_effects": conv_rep.double_effects + ord_rep.double_effects,
            "lost_effects": conv_rep.lost_effects + ord_rep.lost_effects,
            "state_mismatch": conv_rep.state_mismatch + ord_rep.state_mismatch,
            "menu_mismatch": conv_rep.conv_mismatch,
            "billing_errors": bill_rep.errors if bill_rep else None,
            "charges": bill_rep.charges if bill_rep else None,
            "orders": len(orders),
            "reminders": t["reminders"],
            "reminders_twice": reminders_twice,
            "reminders_missing": len(expected_reminders - rem_keys),
            "reminders_unexpected": len(rem_keys - expected_reminders),
            "crashes": faults.crashes, "bot_kills": faults.bot_kills, "redis_kills": faults.redis_kills,
            "redis_stops": faults.redis_stops, "redis_restarted_by": faults.redis_restarted_by,
            "bot_unplanned_exits": faults.bot_unplanned_exits,
            "link_drops": t["link_drops"], "links_lost": t["links_lost"], "binds": t["binds"],
            "deliveries": t["deliveries"], "redeliveries": t["redeliveries"], "temp_errors": t["temp_errors"],
            "rejected": t["rejected"], "submits": t["submits"], "parts_twice": t["parts_twice"],
            "orphan_parts": t["orphan_parts"], "unexpected_messages": t["unexpected_messages"],
            "settled": settled, "settle_s": round(settle_s, 1),
            "duration_s": round(time.monotonic() - started, 1),
            "timeline": tl.log, "phases_s": phases, "loadavg_1m_end": round(os.getloadavg()[0], 2),
            "bot_log": world.bot_log_summary(),
            "checked": {"conversations": conv_rep.checked_subscribers, "ambiguous_last_mo": conv_rep.ambiguous,
                        "orders": ord_rep.checked_subscribers, "audit_entries": view.audit_entries,
                        "expected_charges": bill_rep.expected if bill_rep else None,
                        "ambiguous_charges": bill_rep.ambiguous if bill_rep else None},
            "examples": (conv_rep.examples + ord_rep.examples + (bill_rep.examples if bill_rep else []))[:15],
        })
        if billing_info:
            row["billing_runs"] = billing_info
        row.update(extra)
        if res["duplicates"]:
            # when the copies arrived, per second since the traffic started: adoption after a crash
            # shows as a burst about a heartbeat TTL after the kill
            hist: dict[str, int] = {}
            for at, kind, _ in res["duplicates"]:
                k = f"{kind}@{int(at - tl.t0)}s"
                hist[k] = hist.get(k, 0) + 1
            row["duplicates_at"] = hist
        if "migration_start" in walls or "kill" in walls:
            row["refused_by_phase"] = refused_by_phase(walls, res["temp_errors_at"], world.script_failures())
            row["acked_per_s"] = acked_per_s(walls, [mo[5] for mos in res["subscribers"].values() for mo in mos if mo[1]])
        if res["unanswered_examples"]:
            row["unanswered_examples"] = res["unanswered_examples"]
        if res["wrong_examples"]:
            row["wrong_reply_examples"] = res["wrong_examples"]
        if res["unexpected"]:
            row["unexpected_texts"] = dict(list(res["unexpected"].items())[:5])
        row["targets"] = targets(row)
        row["failed"] = [k for k, ok in row["targets"].items() if not ok]
        return row
    except ScenarioError as e:
        row.update({"error": str(e), "duration_s": round(time.monotonic() - started, 1), "failed": ["error"],
                    "targets": {}})
        return row
    finally:
        for b in world.bots:
            try:
                b.stop(timeout=5)
            except Exception:  # noqa: BLE001
                pass
        smsc.stop()
        world.close()


def _killed_billing(world: World, sizes: Sizes, orders: list[dict[str, Any]], run_times: list[int],
                    say: Callable[[str], None], name: str) -> dict[str, Any]:
    """``smsbot billing run`` killed with SIGKILL once a third of the expected charge audit entries
    are in Redis, then run again to the end."""
    streams = [f"{world.prefix}:{{{s}}}:audit" for s in range(world.shards)]

    def audit_len() -> int:
        p = world.redis.pipeline(transaction=False)
        for s in streams:
            p.xlen(s)
        return sum(p.execute())

    expected = sizes.subscribers * len(M.SEED_CODES) + sizes.orders // 2
    before = audit_len()
    batch = max(10, sizes.subscribers // 40)
    run_times.append(int(time.time() * 1000))
    proc = world.popen_cli("billing", "run", "--batch", str(batch), log_name="billing-killed.log")
    killed_at = None
    while proc.poll() is None:
        n = audit_len() - before
        if n >= expected // 3:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.005)
    proc.wait(30)
    say(f"[{name}] billing run killed after {killed_at} audit entries; running again")
    run_times.append(int(time.time() * 1000))
    second = world.cli("billing", "run", timeout=600)
    verify = world.cli("billing", "verify", timeout=600, check=False)
    vout = verify.stdout.decode(errors="replace").strip().splitlines()
    runs = world.redis.hgetall(f"{world.prefix}:billing:runs")
    unfinished = 0
    for v in runs.values():
        try:
            if not json.loads(v).get("finished"):
                unfinished += 1
        except ValueError:
            pass
    return {"killed": killed_at is not None, "killed_after_audit_entries": killed_at,
            "rerun_summary": second.stdout.decode(errors="replace").strip().splitlines()[-3:],
            "verify_exit": verify.returncode, "verify_discrepancies": max(0, len(vout) - 1) if verify.returncode else 0,
            "verify_tail": vout[-1:] if vout else [], "runs_recorded": len(runs), "runs_unfinished": unfinished}


def _took_over(world: World, killed: int) -> bool:
    """Has another node taken over from the killed primary on port `killed` (Sentinel: the sentinels
    name another primary; Cluster: a node that was a replica of it is a primary now)?"""
    import redis

    from bench.chaos.nodes import sentinel_primary

    try:
        if world.topology == "sentinel":
            named = sentinel_primary(world.sentinels[0])
            return named is not None and named != killed
        for port in world.cluster_ports:
            if port == killed:
                continue
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
            if info.get("role") == "master" and port not in world.primaries:
                return True
    except redis.RedisError:
        return False
    return False


PHASES = ("migration", "primary kill", "other")


def refused_by_phase(walls: dict[str, float], refused_at: list[float],
                     script_failures: list[tuple[float, str]]) -> dict[str, dict[str, int]]:
    """The MOs refused (the chaos SMSC's temporary errors) per phase of a failover scenario: after
    the primary kill, else during the slot migration, else other; and why, from the bots' logs:
    each MO whose script failed by its error (ASK, MOVED, TRYAGAIN, CLUSTERDOWN, other), the rest
    refused with their whole batch (Redis unreachable or the batch failed)."""
    def phase(at: float) -> str:
        if "kill" in walls and at >= walls["kill"]:
            return "primary kill"
        if "migration_start" in walls and walls["migration_start"] <= at <= walls.get("migration_end", float("inf")):
            return "migration"
        return "other"

    out = {p: {"refused": 0, "ASK": 0, "MOVED": 0, "TRYAGAIN": 0, "CLUSTERDOWN": 0, "other": 0, "in failed batches": 0}
           for p in PHASES}
    for at in refused_at:
        out[phase(at)]["refused"] += 1
    for at, cause in script_failures:
        out[phase(at)][cause] += 1
    for counts in out.values():
        scripts = sum(counts[k] for k in ("ASK", "MOVED", "TRYAGAIN", "CLUSTERDOWN", "other"))
        counts["in failed batches"] = max(0, counts["refused"] - scripts)
    return out


def acked_per_s(walls: dict[str, float], acked_at: list[float]) -> dict[str, float | None]:
    """MOs acknowledged per second in each stretch of the traffic (wall clock): before the slot
    migration, during it, between it and the primary kill, after the kill; None for a stretch that
    did not happen or lasted under 0.1 s."""
    start, end = walls["traffic_start"], walls["traffic_end"]
    kill = min(walls.get("kill", end), end)
    m0 = min(walls.get("migration_start", start), kill)
    m1 = min(walls.get("migration_end", m0), kill)
    stretches = {"before the migration": (start, m0), "during the migration": (m0, m1),
                 "after it, before the kill": (m1, kill), "after the kill": (kill, end)}
    out: dict[str, float | None] = {}
    for name, (a, b) in stretches.items():
        out[name] = round(sum(1 for t in acked_at if a <= t < b) / (b - a), 1) if b - a >= 0.1 else None
    return out


def targets(row: dict[str, Any]) -> dict[str, bool]:
    """The targets of issues 11 and 18, per scenario. A reply sent twice is either a crash's resend
    (at most one window per crash) or the answer to an MO the SMSC redelivered after its resp was
    lost (at most one window per link that ended with resps unread: each drop or crash)."""
    allow = row["window"] * row["crashes"]
    ends = row["link_drops"] + row["links_lost"] + row["crashes"]
    allow_redelivered = row["window"] * ends
    crash_twice = row["replies_twice"] - row["replies_twice_redelivered"]
    crash_submits = row["submits_twice"] - row["redelivered_copy_submits"]
    out = {
        "unanswered == 0": row["unanswered"] == 0,
        "double_effects == 0": row["double_effects"] == 0,
        "billing_errors == 0": not row["billing_errors"],
        f"replies_twice but redeliveries' <= window x crashes ({allow})": crash_twice <= allow,
        f"replies_twice_redelivered <= window x links ended ({allow_redelivered})":
            row["replies_twice_redelivered"] <= allow_redelivered,
        f"reminders_twice <= window x crashes ({allow})": row["reminders_twice"] <= allow,
        f"submits_twice but redeliveries' <= window x crashes ({allow})": crash_submits <= allow,
        "nothing lost (lost effects, state, missing reminders) == 0":
            row["lost_effects"] == 0 and row["state_mismatch"] == 0 and row["reminders_missing"] == 0,
        "replies as the model predicts (wrong_replies == 0)": row["wrong_replies"] == 0,
        "no unplanned bot exit": row["bot_unplanned_exits"] == 0,
    }
    if "migration" in row:  # (i): issue 22's "0 MOs refused because of the migration"
        during = row.get("refused_by_phase", {}).get("migration", {})
        out["migration: 0 MOs refused during it (failed batches, ASK/MOVED/TRYAGAIN, other)"] = (
            "error" not in row["migration"] and during.get("refused") == 0)
    if "served_again_s" in row:  # a primary was killed and another promoted (h, i)
        served = list(row["served_again_s"].values())
        out["every bot serves again within 10 s of the promotion"] = all(s is not None and s <= 10 for s in served)
    return out


def environment() -> dict[str, Any]:
    commit = ""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(REPO), capture_output=True, timeout=10).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    dirty: list[str] = []
    try:
        st = subprocess.run(["git", "status", "--porcelain", "--", "smsbot", "commands", "config.yaml"], cwd=str(REPO),
                            capture_output=True, timeout=10).stdout.decode()
        dirty = [line[3:] for line in st.splitlines() if line.strip()]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "commit": commit, "uncommitted_smsbot_files": dirty, "smsbot_command": smsbot_command(),
            "base_config": str(base_config_path()), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def summary_table(rows: list[dict[str, Any]]) -> str:
    cols = ("scenario", "mos", "unanswered", "replies_twice", "replies_twice_redelivered", "submits_twice",
            "double_effects", "billing_errors", "reminders_twice", "crashes", "link_drops", "served_again_s", "settled",
            "failed")
    lines = [" | ".join(cols)]
    for r in rows:
        vals = []
        for c in cols:
            v = r.get(c)
            if c == "failed":
                v = ", ".join(x.split(" (")[0] for x in (v or [])) or "-"
            elif c == "served_again_s":  # the slowest bot's, after the promotion
                v = "-" if not v else "never" if None in v.values() else max(v.values())
            vals.append(str(v))
        lines.append(" | ".join(vals))
    return "\n".join(lines)
