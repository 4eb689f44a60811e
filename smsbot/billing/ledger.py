"""The ledger: a subscriber's charges (``<prefix>:{N}:ledger:<msisdn>``, one field per charge)
and a month's itemized statement (CXZD) from it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from smsbot.periods import Period
from smsbot.store import Store, _s


@dataclass(frozen=True)
class Charge:
    msisdn: str
    field: str
    code: str
    period: str | None  # monthly charges
    use: str | None  # on-demand charges
    fen: int
    at_ms: int
    run: str
    raw: str


def _parse_charge(msisdn: str, fld: str, raw: str) -> Charge:
    code, _, rest = fld.partition(":")
    period, use = (None, rest[4:]) if rest.startswith("use:") else (rest, None)
    rec = json.loads(raw)
    return Charge(msisdn, fld, code, period, use, int(rec["fen"]), int(rec["at"]), str(rec.get("run", "")), raw)


def ledger(store: Store, msisdn: str) -> list[Charge]:
    raw = store.redis.hgetall(store.keys.ledger(msisdn))
    out = [_parse_charge(msisdn, _s(k), _s(v)) for k, v in raw.items()]
    out.sort(key=lambda c: (c.at_ms, c.field))
    return out


@dataclass(frozen=True)
class StatementLine:
    code: str
    charges: int  # monthly: periods charged (1 per period); on-demand: uses charged
    fen: int
    on_demand: bool


def statement(charges: list[Charge], period: Period) -> list[StatementLine]:
    """A month's itemized bill (CXZD): the charges made in `period` (their ledger time, as `smsbot
    billing ledger` shows it), one line per service in order of the first charge. The bill
    command's Lua step applies the same rule to the ledger hash; tests check they agree."""
    lines: dict[str, list[int]] = {}
    for c in sorted(charges, key=lambda c: (c.at_ms, c.field)):
        if period.start_ms <= c.at_ms < period.end_ms:
            e = lines.setdefault(c.code, [0, 0, 0])
            e[0] += 1
            e[1] += c.fen
            e[2] = e[2] or int(c.use is not None)
    return [StatementLine(code, n, fen, bool(u)) for code, (n, fen, u) in lines.items()]
