"""Steps of the billing scenarios that several end-to-end tests share: an order written as `smsbot
order` writes it (`commands.orders.events.write_order`), a billing run as `smsbot billing run` makes
it (its own Redis connection), and a clock in the middle of last month for a bot whose scenario needs
time of its month behind "now"."""

from __future__ import annotations

import itertools
import time
from datetime import tzinfo
from typing import Callable

from commands.orders.events import write_order
from smsbot import billing
from smsbot.connections import open_store
from smsbot.periods import period_of

from .conftest import World

_orders = itertools.count(1)


def order(world: World, msisdn: str, code: str, at_ms: int | None = None, order_id: str | None = None) -> str:
    """An order of `code` for `msisdn` on the world's event stream, made at `at_ms` (now when None);
    its order id."""
    oid = order_id or f"e2e-{next(_orders)}-{time.time_ns()}"
    write_order(world.settings, world.bot.store.redis, msisdn, code, at_ms if at_ms is not None else int(time.time() * 1000), oid)
    return oid


def run_billing(world: World, at_ms: int) -> billing.Summary:
    """A billing run at `at_ms` over the world's Redis, on a connection of its own."""
    store = open_store(world.settings)
    try:
        return billing.run(world.settings, store, at_ms)
    finally:
        store.close()


def mid_last_month(tz: tzinfo) -> Callable[[], float]:
    """A clock running from the middle of the month before this one: the scenario needs time of its
    month behind "now" (and a month before it), wherever the calendar stands, and all of it in the past."""
    real_ms = int(time.time() * 1000)
    last = period_of(period_of(real_ms, tz).start_ms - 1, tz)
    shift_s = (real_ms - (last.start_ms + 15 * 86400_000)) / 1000
    return lambda: time.time() - shift_s
