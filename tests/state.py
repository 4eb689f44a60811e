"""What a subscriber's state is in Redis, read for the end-to-end tests: the state of each of their
subscriptions and their audit entries, as a running `World`'s bot stored them."""

from __future__ import annotations

import json

from .conftest import World


def subs_state(world: World, msisdn: str) -> dict[str, str]:
    """Service code -> the state of `msisdn`'s subscription to it ("active", "cancelled", ...)."""
    raw = world.bot.store.redis.hgetall(world.bot.store.keys.subs(msisdn))
    return {k.decode(): json.loads(v)["state"] for k, v in raw.items()}


def audit_entries(world: World, msisdn: str) -> list[dict[str, str]]:
    """The audit entries about `msisdn`, oldest first, their fields as text."""
    stream = world.bot.store.keys.subscriber(msisdn).audit
    out = []
    for _id, fields in world.bot.store.redis.xrange(stream):
        f = {k.decode(): v.decode() for k, v in fields.items()}
        if f["msisdn"] == msisdn:
            out.append(f)
    return out
