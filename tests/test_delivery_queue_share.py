"""How much of the shared queue one sender takes while its SMPP loop is not taking entries from the
worker (waiting to reconnect after a lost link): the worker thread for real, on the test session's
Redis. (A suspended instance takes none: tests/test_ctl_queue.py.)"""

from __future__ import annotations

import time

import commands
from smsbot.connections import open_store
from smsbot.delivery import READ_COUNT, Delivery
from smsbot.keys import OUTBOX_GROUP
from smsbot.live import Live
from smsbot.outbox import OutboxSender
from smsbot.router import Router
from smsbot.session import SequenceGenerator

from .helpers import wait_until


def test_a_sender_waiting_to_reconnect_takes_at_most_ten_windows_of_the_queue(make_settings):
    """Before: the bound counted only the sender's backlog, which the loop fills (`tick`); while the
    loop waited to reconnect the worker read 100 more entries every poll, the whole queue."""
    settings = make_settings(**{"smsc.window": 10, "delivery.poll_seconds": 0.02,
                                "delivery.heartbeat_seconds": 0.2, "delivery.lease_seconds": 1.0})
    store = open_store(settings)
    store.load_scripts()
    store.ensure_groups()
    queue = store.keys.queue(0)
    for i in range(600):
        store.redis.xadd(queue, {"to": f"1380000{i:04d}", "from": "10086", "lang": "zh-CN", "tpl": "help", "data": "{}", "mo": ""})
    beats: list[float] = []
    live = Live(settings, Router(settings, commands.all_commands()))
    d = Delivery(live, store, OutboxSender(live, SequenceGenerator(), store.keys), "waiting",
                 describe=lambda: beats.append(time.monotonic()) or {})
    d.start()
    try:
        def pending() -> int:
            d.alive(time.monotonic())  # what the transport's reconnect wait does; it never calls tick
            return store.redis.xpending(queue, OUTBOX_GROUP)["pending"]

        assert wait_until(lambda: pending() >= 100, 10)
        seen = len(beats)
        assert wait_until(lambda: len(beats) >= seen + 3, 10)  # three renewals more: some 30 polls
        assert pending() < settings.smsc.window * 10 + READ_COUNT, pending()
    finally:
        d.stop()
