"""What an order or an on-demand use event holds and how one is written: the fields ``smsbot order``,
``smsbot use`` and the HTTP API (``POST /v1/orders``, ``/v1/uses``) write to the streams the bot
consumes (`commands.orders.OrdersCommand.event_sources`), and the short code that answers an order
(`reminder_short_code`: without one, an order is refused, since nothing would send its reminder)."""

from __future__ import annotations

import os
import time
from typing import Any

from smsbot.config import Settings
from smsbot.keys import Keys

from commands.orders.settings import NAME, orders_settings

ALIASES = ("reminders",)  # its former name, still accepted in a short code's list


def reminder_short_code(settings: Settings) -> tuple[str, str] | None:
    """(short code, language) that sends reminders and takes the cancel words, or None if none enables them."""
    own = orders_settings(settings).short_code
    for sc in settings.short_codes:
        if (own is None and any(n in (NAME, *ALIASES) for n in sc.commands)) or sc.code == own:
            return sc.code, sc.language.value
    return None


def new_id(kind: str) -> str:
    """A new unique event id, e.g. ``ord-20261201095333-1a2b3c4d`` (`kind` ``ord`` or ``use``)."""
    return f"{kind}-{time.strftime('%Y%m%d%H%M%S')}-{os.urandom(4).hex()}"


def order_fields(msisdn: str, code: str, at_ms: int, order_id: str, source: str = "cli") -> dict[str, str]:
    """The fields of one order event (what ``smsbot order`` and the HTTP API write)."""
    return {"order_id": order_id, "msisdn": msisdn, "service": code, "at": str(at_ms), "source": source}


def use_fields(msisdn: str, code: str, at_ms: int, use_id: str, source: str = "cli") -> dict[str, str]:
    """The fields of one on-demand use event (what ``smsbot use`` and the HTTP API write)."""
    return {"use_id": use_id, "msisdn": msisdn, "service": code, "at": str(at_ms), "source": source}


def write_order(settings: Settings, client: Any, msisdn: str, code: str, at_ms: int, order_id: str) -> str:
    """XADD one order event exactly as ``smsbot order`` does; returns the entry id."""
    keys = Keys(settings.redis.key_prefix, settings.redis.shards)
    return _s(client.xadd(keys.order_events(), order_fields(msisdn, code, at_ms, order_id)))


def write_use(settings: Settings, client: Any, msisdn: str, code: str, at_ms: int, use_id: str) -> str:
    """XADD one on-demand use event exactly as ``smsbot use`` does; returns the entry id."""
    keys = Keys(settings.redis.key_prefix, settings.redis.shards)
    return _s(client.xadd(keys.use_events(), use_fields(msisdn, code, at_ms, use_id)))


def _s(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
