"""A real `Delivery` on a test's Redis (a store of its own, scripts loaded, groups made) and its
leases held as a live sender holds them: for the tests of leases, claims and adoption."""

from __future__ import annotations

from typing import Any

import commands
from smsbot.config import Settings
from smsbot.connections import open_store
from smsbot.delivery import Delivery
from smsbot.live import Live
from smsbot.outbox import OutboxSender
from smsbot.router import Router
from smsbot.session import SequenceGenerator


def delivery_for(settings: Settings, name: str, **clocks: Any) -> Delivery:
    """A `Delivery` named `name` (its consumer) on `settings`' Redis, not started (`clocks`: its
    `clock` and `wall`, when the test drives them)."""
    store = open_store(settings)
    store.load_scripts()
    store.ensure_groups()
    live = Live(settings, Router(settings, commands.all_commands()))
    snd = OutboxSender(live, SequenceGenerator(), store.keys)
    return Delivery(live, store, snd, name, **clocks)


def hold_lease(d: Delivery, seconds: int = 60) -> None:
    """`d`'s lease on every shard, held for `seconds` as its heartbeat would."""
    for p in d.lease_prefixes:
        d.store.redis.set(p + d.consumer, d.instance, ex=seconds)
