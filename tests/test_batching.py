"""One Redis round trip per batch of MOs (issue #6): counted by Redis itself.

A batch of MOs from many subscribers, the outbox acknowledgements of earlier replies and an MT
record all go to Redis in ONE pipelined write, and every reply comes back from that one round
trip. Redis's ``total_reads_processed`` (reads from client sockets) shows how many writes the bot
made, as long as the batch fits Redis's 16 KB read buffer (a larger one is still one write, read
in several pieces); a dedicated server keeps other clients out of the count.
"""

from __future__ import annotations

import commands
from smsbot import admin, embedded
from smsbot.connections import open_store
from smsbot.dispatch import Dispatcher
from smsbot.messages import Inbound, Status
from smsbot.identity import SenderIdentity
from smsbot.live import Live
from smsbot.router import Router
from smsbot.store import KeyWrite

from .conftest import base_config


def test_a_batch_is_one_redis_round_trip(tmp_path):
    from smsbot import config

    server = embedded.ensure_running(tmp_path / "redis")
    try:
        settings = config.from_dict(base_config(server.url, tmp_path / "var"))
        numbers = [f"1390000{i:04d}" for i in range(17)]
        for n in numbers:
            admin.subscribe(settings, n, "VIDEO")
            admin.subscribe(settings, n, "MUSIC")
        store = open_store(settings)
        store.load_scripts()
        # the sender "probe" holds its lease, so the MO scripts hand it the replies (smsbot.delivery)
        prefixes = [store.keys.lease_prefix(n) for n in range(store.keys.shards)]
        for p in prefixes:
            store.redis.set(p + "probe", "1", ex=60)
        dispatcher = Dispatcher(Live(settings, Router(settings, commands.all_commands())), store)
        probe = SenderIdentity("probe", tuple(prefixes))
        # earlier replies to acknowledge in the same round trip (what the transport does)
        first = dispatcher.handle([Inbound(n, "10086", "0000", i) for i, n in enumerate(numbers[12:])], probe)
        numbers = numbers[:12]
        acks = [(stream, entry_id) for stream, entry_id, _f in first.entries]
        assert len(acks) == 5

        def reads() -> int:
            return int(store.redis.info("stats")["total_reads_processed"])

        before = reads()
        batch = [Inbound(n, "10086", "0000", 100 + i) for i, n in enumerate(numbers)]
        batch += [Inbound(n, "10086", "HELLO", 200 + i) for i, n in enumerate(numbers[:4])]
        result = dispatcher.handle(batch, probe, acks, [KeyWrite(store.keys.mt("probe-1"), {"state": "ENROUTE"}, 60)])
        after = reads()
        assert after - before == 2, "one read for the whole batch, one for the INFO asking"
        assert [oc.status for oc in result.outcomes] == [Status.ROK] * len(batch)
        assert result.acks_flushed
        assert len(result.entries) == len(batch), "every reply came back from that round trip"
        # a subscriber's MOs apply in order within the batch: HELLO after 0000 answers the open menu
        assert sorted(f["tpl"] for _s, _i, f in result.entries) == ["subscriptions.invalid"] * 4 + ["subscriptions.menu"] * 12
        assert store.redis.exists(store.keys.mt("probe-1"))
        assert all(store.redis.xrange(s, entry_id, entry_id) == [] for s, entry_id in acks), "acks applied"
        store.close()
    finally:
        embedded.stop(tmp_path / "redis")


def test_a_thread_that_ends_hands_its_kept_connections_back(make_settings):
    """Round trips keep their connection for the thread's next one (`Store.hot_connection`); a
    thread that ends (an API worker thread, a billing run) must not leave them checked out."""
    import gc
    import threading

    store = open_store(make_settings())
    pool = store.redis.connection_pool

    def one_round_trip() -> None:
        assert store.roundtrip([("PING",)]) == [b"PONG"]

    threads = [threading.Thread(target=one_round_trip) for _ in range(40)]
    for t in threads:
        t.start()
        t.join()
    gc.collect()
    in_use = len(pool._in_use_connections)
    assert in_use <= 1, f"{in_use} connections stranded by ended threads"
    assert pool._created_connections <= 2, "each thread reused the connection the previous one handed back"
