"""Checks across sections of validated settings: what no single section's model can see (the Redis
mode and its addresses, names that must fit in a reply). A command's settings that name a short code
are checked by the command, with the whole configuration as the validation's context."""

from __future__ import annotations

from smsbot.codec import segment_text
from smsbot.config.schema import RedisMode, Settings


def cross_checks(s: Settings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    r = s.redis
    if r.mode is RedisMode.SENTINEL:
        if not r.sentinels:
            problems.append(("redis.sentinels", "mode sentinel needs the sentinels (host:port of each)"))
        if r.url:
            problems.append(("redis.url", "not used in mode sentinel (the sentinels name the primary); leave it empty"))
    if r.mode is RedisMode.CLUSTER and not r.url:
        problems.append(("redis.url", "mode cluster needs a cluster node, e.g. redis://10.0.0.1:7000"))
    problems += text_sizes(s)
    return problems


def text_sizes(s: Settings) -> list[tuple[str, str]]:
    """Names that go into replies as they are (services; a command's own, such as data plans, are checked
    by its settings) must fit in 255 SMS parts on their own; the templates are checked by
    `smsbot.reply_templates.check_templates` (the registry's check)."""
    problems: list[tuple[str, str]] = []
    named = [(f"services.{i}", x) for i, x in enumerate(s.services)]
    for key, item in named:
        for attr in ("name", "name_en"):
            text = getattr(item, attr)
            if text:
                try:
                    segment_text(text)
                except ValueError as e:
                    problems.append((f"{key}.{attr}", f"a reply naming it could never be sent: {e}"))
    return problems
