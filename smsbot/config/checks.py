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
    problems += cmpp_fees(s)
    return problems


def cmpp_fees(s: Settings) -> list[tuple[str, str]]:
    """With smsc.protocol cmpp3/cmpp2 every catalogue service needs its Service_Id (its charged
    replies carry it and the catalogue's fee), and every fee must fit FeeCode (6 digits of fen)."""
    if not s.smsc.is_cmpp:
        return []
    problems: list[tuple[str, str]] = []
    codes = {svc.code for svc in s.services}
    for svc in s.services:
        if svc.code not in s.smsc.cmpp.services:
            problems.append((f"smsc.cmpp.services.{svc.code}",
                             f"CMPP needs the Service_Id of service {svc.code}: add {{service_id: ...}} under smsc.cmpp.services"))
        elif svc.price_fen > 999999:
            problems.append((f"services.{svc.code}.price_fen", f"{svc.price_fen} fen does not fit CMPP's FeeCode (at most 999999)"))
    for code in s.smsc.cmpp.services:
        if code not in codes:
            problems.append((f"smsc.cmpp.services.{code}", f"not a service of the catalogue; known: {', '.join(sorted(codes))}"))
    if s.smsc.tls:
        problems.append(("smsc.tls", "TLS is for SMPP links; CMPP gateways speak plain TCP (turn it off or use protocol smpp)"))
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
