"""What a subscriber's state is in Redis, read for the end-to-end tests: the state of each of their
subscriptions, their audit entries and their redelivery guards, as a running `World`'s bot stored them."""

from __future__ import annotations

import json

from smsbot.records import Guard, read_mark, read_state

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


def held_guards(world: World, msisdn: str) -> list[Guard]:
    """`msisdn`'s redelivery guards that still hold, at every short code: not expired, and of a
    batch past its session's watermark (its resp not known read by the SMSC; `smsbot.records`)."""
    store = world.bot.store
    r, sk = store.redis, store.keys.subscriber(msisdn)
    now_ms = int(r.time()[0] * 1000)
    marks = {k.decode(): read_mark(v) for k, v in r.hgetall(sk.marks).items()}
    return [g for key in r.keys(sk.conv_prefix + "*") for g in read_state(r.get(key), now_ms).guards
            if g.batch > marks.get(g.token, 0)]
