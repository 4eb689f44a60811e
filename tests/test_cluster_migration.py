"""A Redis Cluster slot migration while MOs flow (issue 22): the slots holding a third of the
subscribers move key by key (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE), as a large slot moves in
production, between the answers of running conversations. ASK, TRYAGAIN and MOVED are followed by
the round trip: no batch fails, no MO is refused (the SMSC redelivers nothing), every cancel
confirmation arrives once. An MO whose slot is held mid-migration waits for it without holding the
other subscribers' MOs (the round trip gives its TRYAGAIN back, the pipeline tries it again). And a
cluster with more primaries than `redis.shards` is a warning at start.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
from redis.crc import key_slot

from smsbot import config, topology
from smsbot.roundtrip import ClusterRoundtrip

from .conftest import Phone, World, base_config
from .deliveries import delivery_for, hold_lease
from .helpers import wait_until
from .redis_nodes import Nodes, migrate_slot
from .state import subs_state


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    nodes = Nodes(tmp_path_factory.mktemp("cluster"))
    try:
        yield nodes.cluster(3)
    finally:
        nodes.stop()


def _world(tmp_path: Path, port: int, **overrides) -> World:
    settings = config.from_dict(base_config(f"redis://127.0.0.1:{port}", tmp_path / "var", **{"redis.mode": "cluster"},
                                            **overrides))
    return World.started(settings)


def test_slot_migration_under_load_is_followed_not_failed(cluster: list[int], tmp_path: Path):
    w = _world(tmp_path, cluster[0])
    try:
        store = w.bot.store
        rc = store.redis
        source, target = cluster[0], cluster[1]
        moving = sorted({key_slot(f"{{{n}}}".encode()) for n in range(store.keys.shards)
                         if rc.get_node_from_key(f"{{{n}}}").port == source})
        assert moving, "the source node owns none of the shards"
        numbers = [n for n in (str(13800000000 + i) for i in range(400))
                   if key_slot(store.keys.subscriber(n).tag.encode()) in moving][:12]
        for n in numbers:
            w.subscribe(n, "VIDEO", "MUSIC")
        phones = [w.handset(n) for n in numbers]
        for p in phones:
            assert "1. 视频会员包月" in p.ask("0000")  # every slot holds keys to move
        before = dict(ClusterRoundtrip.followed)
        answers = [0]
        lock = threading.Lock()
        done = threading.Event()
        failures: list[str] = []

        def converse(group: list[Phone]) -> None:
            for p in group:
                try:
                    for text, needle in (("1", "您已成功退订视频会员包月"), ("0000", "1. 彩铃音乐包"),
                                         ("1", "您已成功退订彩铃音乐包")):
                        got = p.ask(text, timeout=20)
                        if needle not in got:
                            failures.append(f"{p.msisdn} {text!r}: {got!r}")
                        with lock:
                            answers[0] += 1
                except Exception as e:  # noqa: BLE001 - said by the assertion below
                    failures.append(f"{p.msisdn}: {e!r}")

        def between_keys() -> None:  # the next key moves once a conversation went on, or 5 ms later
            seen = answers[0]
            wait_until(lambda: answers[0] > seen or done.is_set(), 0.005)

        # four conversations at a time (the simulator's handset API is not for dozens of clients at once)
        talkers = [threading.Thread(target=converse, args=(phones[i::4],)) for i in range(4)]
        for t in talkers:
            t.start()
        moved = 0
        try:
            for slot in moving:
                moved += migrate_slot(slot, source, target, cluster, between_keys)
        finally:
            for t in talkers:
                t.join(120)
            done.set()
        assert not failures, failures
        assert w.sim.stats()["mo_redelivered"] == 0, "no MO refused (redelivered by the SMSC)"
        assert moved > len(numbers), "the slots held the subscribers' keys"
        after = ClusterRoundtrip.followed
        assert after["ASK"] + after["TRYAGAIN"] > before.get("ASK", 0) + before.get("TRYAGAIN", 0), \
            "the conversations met the migration"
        for p in phones:
            assert p.quiet() == [], "no reply twice"
        for n in numbers:
            assert subs_state(w, n) == {"VIDEO": "cancelled", "MUSIC": "cancelled"}
            assert rc.get_node_from_key(store.keys.subscriber(n).tag).port == target  # the bot follows the slot map
    finally:
        w.stop()


def test_a_cluster_larger_than_redis_shards_is_a_warning_at_start(cluster: list[int], tmp_path: Path):
    from smsbot import connections

    def problems(shards: int) -> list:
        raw = base_config(f"redis://127.0.0.1:{cluster[0]}", tmp_path / "var", **{"redis.mode": "cluster",
                                                                                  "redis.shards": shards})
        store = connections.store(config.from_dict(raw))
        try:
            return topology.check(store)
        finally:
            store.close()

    (event, fields), = problems(2)
    assert event == "redis_shards_below_primaries" and fields["primaries"] == 3 and fields["primaries_without_subscribers"] >= 1
    assert problems(64) == []  # 64 shard tags: some on every primary


def test_adoption_and_claims_wait_for_a_migrating_slot_instead_of_failing(cluster: list[int], tmp_path: Path):
    """Before: adopt.lua and claim.lua looked up the owners' leases by keys they had not declared;
    while the slot migrated, a lease not on the node that ran the script failed it with "Lua script
    attempted to access a non local key" (and on the importing node a lease still on the source
    looked absent: a live sender's reply could be adopted). Now the leases are declared KEYS: Redis
    answers ASK/TRYAGAIN until they are on one node, the shard waits for the next turn, and the
    dead sender's reply is adopted once, its read queue entry claimed once, the live one's kept."""

    settings = config.from_dict(base_config(f"redis://127.0.0.1:{cluster[0]}", tmp_path / "var",
                                            **{"redis.mode": "cluster", "delivery.orphan_age_seconds": 0}))
    d = delivery_for(settings, "adopter")
    store = d.store
    rc, keys = store.redis, store.keys
    shard = 5
    tag = f"{{{shard}}}"
    source = rc.get_node_from_key(keys.outbox(shard)).port
    target = next(p for p in cluster if p != source)
    outbox, queue, prefix = keys.outbox(shard), keys.queue(shard), d.lease_prefixes[shard]
    base = {"to": "13800000001", "from": "10086", "lang": "zh-CN", "tpl": "help", "data": "{}", "mo": ""}
    hold_lease(d)
    rc.set(prefix + "alive", "alive", ex=600)
    dead_reply = rc.xadd(outbox, {**base, "own": "ghost"}).decode()
    live_reply = rc.xadd(outbox, {**base, "own": "alive"}).decode()
    rc.xadd(queue, base)
    (read,) = [e for e in store.read_outbox("ghost-reader", 100) if e[0] == queue]  # read by a sender that died (it never held a lease)
    assert wait_until(lambda: time.time() * 1000 > int(live_reply.split("-")[0]), 1)
    errors: list[str] = []
    claimed: list[str] = []
    turns = [0]

    def turn() -> None:
        try:
            d.adopt_orphans()
            claimed.extend(e[1] for e in d.claim_from_dead() if e[0] == queue)
            turns[0] += 1
        except Exception as e:  # noqa: BLE001 - said by the assertion below
            errors.append(f"{type(e).__name__}: {e}")

    moved = migrate_slot(key_slot(tag.encode()), source, target, cluster, turn)
    turn()
    assert not errors, errors
    assert moved >= 4 and turns[0] == moved + 1, "the outbox, the queue and the leases moved one by one"
    assert rc.get_node_from_key(outbox).port == target
    assert [i.decode() for i, _f in rc.xrange(outbox)] == [live_reply], "the live sender's reply stays its own"
    adopted = [f[b"adopted"].decode() for _i, f in rc.xrange(queue) if b"adopted" in f]
    assert adopted == [dead_reply], "the dead sender's reply adopted once"
    assert claimed == [read[1]], "the entry the dead sender read claimed once"


def test_an_mo_on_a_slot_mid_migration_waits_for_it_without_holding_the_others(cluster: list[int], tmp_path: Path):
    """An MO script on a slot whose migration has begun meets TRYAGAIN until the slot has moved (it
    declares its redelivery guard, a key no node has yet). Before: the transport slept between the
    tries for up to 1 s, serving nothing else, then refused the MO (the SMSC redelivered it); then
    the round trip waited for the slot without holding the transport, but held the MOs batched with
    it, and with two subscribers of the moving slot in the two batches in flight nobody else was
    answered until the slot had moved. Now such an MO is put back, the rest of its batch answered at
    once: other subscribers, sending at the same moment as a second one of the moving slot, are all
    answered while the slot is held mid-migration, and the waiting MOs are answered once it has
    moved, applied once, never refused."""
    w = _world(tmp_path, cluster[0])
    try:
        store = w.bot.store
        rc = store.redis
        numbers = [str(13700000000 + i) for i in range(400)]
        waiting_no = numbers[0]
        slot = key_slot(store.keys.subscriber(waiting_no).tag.encode())
        source = rc.get_node_from_key(store.keys.subscriber(waiting_no).tag).port
        target = next(p for p in cluster[:3] if p != source)
        second_no = next(n for n in numbers[1:] if key_slot(store.keys.subscriber(n).tag.encode()) == slot)
        others_no = [n for n in numbers if rc.get_node_from_key(store.keys.subscriber(n).tag).port != source][:4]
        for n in (waiting_no, second_no, *others_no):
            w.subscribe(n, "VIDEO", "MUSIC")
        waiting, second = w.handset(waiting_no), w.handset(second_no)
        others = [w.handset(n) for n in others_no]
        src, dst = redis.Redis(port=source), redis.Redis(port=target)
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src.execute_command("CLUSTER MYID"))
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst.execute_command("CLUSTER MYID"))
        tries = ClusterRoundtrip.followed["TRYAGAIN"]
        got: dict[str, str] = {}

        def ask(phone: Phone) -> None:
            try:
                got[phone.msisdn] = "\n".join(m["text"] for m in phone.expect(1, timeout=30))
            except AssertionError as e:  # no answer in time: said by the assertions below
                got[phone.msisdn] = f"no answer: {e}"

        askers = [threading.Thread(target=ask, args=(p,)) for p in (waiting, second)]
        waiting.send("0000")
        askers[0].start()
        try:
            assert wait_until(lambda: ClusterRoundtrip.followed["TRYAGAIN"] > tries + 3, 10), "the MO met the migration"
            second.send("0000")  # the second subscriber of the moving slot (the code before: the other batch in flight
            for o in others:  # held with it), then four others: they ride its batch or come after it
                o.send("0000")
            askers[1].start()
            for o in others:
                assert "1. 视频会员包月" in "\n".join(m["text"] for m in o.expect(1, timeout=10)), \
                    "answered while the slot is held"
            assert waiting_no not in got and second_no not in got, "the MOs of the moving slot are not answered yet"
            assert w.sim.stats()["mo_redelivered"] == 0, "nor refused"
        finally:
            migrate_slot(slot, source, target, cluster)
            for t in askers:
                t.join(40)
        for n in (waiting_no, second_no):
            assert "1. 视频会员包月" in got.get(n, ""), got
        assert w.sim.stats()["mo_redelivered"] == 0, "no MO refused (redelivered by the SMSC)"
        assert "您已成功退订视频会员包月" in waiting.ask("1"), "the menu it opened is on the target now"
        assert "您已成功退订视频会员包月" in second.ask("1")
        assert waiting.quiet() == [] and second.quiet() == [] and all(o.quiet() == [] for o in others)
    finally:
        w.stop()


def test_a_round_trip_gives_back_the_tryagain_of_the_commands_its_caller_runs_again(cluster: list[int],
                                                                                     tmp_path: Path):
    """`give_back`: a script on a slot mid-migration comes back with its TRYAGAIN after a few tries
    (Redis ran nothing), not followed for up to 10 s; the round trip's other commands are answered
    (a single-key command on that slot follows ASK as before, one on another slot runs)."""
    from smsbot import connections

    store = connections.store(config.from_dict(base_config(f"redis://127.0.0.1:{cluster[0]}", tmp_path / "var",
                                                           **{"redis.mode": "cluster"})))
    try:
        rc = store.redis
        here, there = "{gb-moving}:a", "{gb-moving}:b"  # `there` exists on no node: TRYAGAIN for both at once
        slot = key_slot(b"gb-moving")
        rc.set(here, "1")
        elsewhere = next(f"{{gb-other-{i}}}" for i in range(100)
                         if rc.get_node_from_key(f"{{gb-other-{i}}}").port != rc.get_node_from_key(here).port)
        source = rc.get_node_from_key(here).port
        target = next(p for p in cluster[:3] if p != source)
        src, dst = redis.Redis(port=source), redis.Redis(port=target)
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src.execute_command("CLUSTER MYID"))
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst.execute_command("CLUSTER MYID"))
        try:
            tries = ClusterRoundtrip.followed["TRYAGAIN"]
            script = ("EVAL", "return redis.call('GET', KEYS[1])", 2, here, there)
            rt = store.start_roundtrip([script, ("GET", here), ("SET", elsewhere, "x")], give_back=range(0, 1))
            moving, got, other = rt.wait()
            assert isinstance(moving, Exception) and str(moving).startswith("TRYAGAIN")
            assert (got, other) == (b"1", b"OK")
            assert ClusterRoundtrip.followed["TRYAGAIN"] - tries < 10, "a few tries, not 10 s of them"
        finally:
            migrate_slot(slot, source, target, cluster)
        rt = store.start_roundtrip([script], give_back=range(0, 1))
        assert rt.wait() == [b"1"], "once the slot has moved it runs"
    finally:
        store.close()


def test_the_chaos_runner_tells_what_the_migration_refused_from_what_the_kill_did():
    """Scenario (i)'s row: the SMSC's refusals split by phase (after the kill; else during the
    migration; else other), each phase's script failures by the redirection the bots logged, the
    rest refused with their batch; and MOs acknowledged per second in each stretch."""
    from bench.chaos.runner import acked_per_s, refused_by_phase

    walls = {"traffic_start": 100.0, "migration_start": 101.0, "migration_end": 105.0, "kill": 106.0,
             "traffic_end": 110.0}
    got = refused_by_phase(walls, [100.5, 102.0, 103.0, 104.0, 107.0, 108.0, 109.0],
                           [(102.0, "TRYAGAIN"), (103.5, "ASK"), (107.0, "CLUSTERDOWN")])
    assert got["migration"] == {"refused": 3, "ASK": 1, "MOVED": 0, "TRYAGAIN": 1, "CLUSTERDOWN": 0, "other": 0,
                                "in failed batches": 1}
    assert got["primary kill"]["refused"] == 3 and got["primary kill"]["CLUSTERDOWN"] == 1
    assert got["primary kill"]["in failed batches"] == 2
    assert got["other"]["refused"] == 1 and got["other"]["in failed batches"] == 1
    rates = acked_per_s(walls, [100.1, 100.2, 102.0, 105.5, 107.0, 108.0])
    assert rates == {"before the migration": 2.0, "during the migration": 0.2, "after it, before the kill": 1.0,
                     "after the kill": 0.5}
    assert acked_per_s({**walls, "migration_end": 106.0}, [])["after it, before the kill"] is None
