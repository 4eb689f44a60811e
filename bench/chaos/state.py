"""Reading smsbot's state out of Redis, by the key layout documented in ``smsbot/keys.py``.

Written here (not imported) so that the check does not share code with what it checks:
``<prefix>:{<crc32(msisdn) % shards>}:subs:<msisdn>`` (hash code -> JSON record with ``state``),
``...:conv:<msisdn>:<short code>`` (the MO state: byte 2, the conversation's end in ms, NUL, its JSON
``{"type": "menu", "items": [codes]}`` or nothing, then the guards, each after a byte 1; the form
before: the JSON alone, ended by the key's time to live),
``...:ledger:<msisdn>`` (hash ``<code>:<YYYY-MM>`` -> JSON ``{"fen": ...}``),
``...:orders:<msisdn>`` (hash order id -> JSON), and the per-shard audit streams
``<prefix>:{N}:audit`` (fields msisdn, service, old, new, reason, ledger).
"""

from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from typing import Any, Iterable

LIVE = ("active", "pending")


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class RedisView:
    """A snapshot of the keys of `msisdns` (loaded in pipelined batches) and of every audit entry."""

    def __init__(self, client: Any, prefix: str, shards: int, msisdns: Iterable[str], short_code: str = "10086",
                 batch: int = 2000):
        self.r = client
        self.prefix, self.shards, self.short_code = prefix, shards, short_code
        self.msisdns = list(dict.fromkeys(msisdns))
        self._subs: dict[str, dict[str, str]] = {}
        self._conv: dict[str, Any] = {}
        self._ledger: dict[str, dict[str, int]] = {}
        self._orders: dict[str, set[str]] = {}
        seconds, micros = client.time()
        self.now_ms = int(seconds) * 1000 + int(micros) // 1000  # Redis's clock: when a stored conversation ends
        for i in range(0, len(self.msisdns), batch):
            chunk = self.msisdns[i:i + batch]
            p = client.pipeline(transaction=False)
            for m in chunk:
                p.hgetall(self._key("subs", m))
                p.get(self._key("conv", m) + ":" + short_code)
                p.hgetall(self._key("ledger", m))
                p.hkeys(self._key("orders", m))
            res = p.execute()
            for j, m in enumerate(chunk):
                subs, conv, ledger, orders = res[4 * j:4 * j + 4]
                self._subs[m] = {_s(k): self._state(v) for k, v in subs.items()}
                self._conv[m] = self._menu(conv, self.now_ms)
                self._ledger[m] = {_s(k): self._fen(v) for k, v in ledger.items()}
                self._orders[m] = {_s(x) for x in orders}
        self._cancel: dict[str, Counter[str]] = defaultdict(Counter)
        self._order: dict[str, Counter[str]] = defaultdict(Counter)
        self._charge: dict[str, Counter[str]] = defaultdict(Counter)
        self.audit_entries = 0
        for shard in range(shards):
            stream = f"{prefix}:{{{shard}}}:audit"
            start = "-"
            while True:
                entries = client.xrange(stream, min=start, max="+", count=10000)
                for eid, f in entries:
                    self.audit_entries += 1
                    f = {_s(k): _s(v) for k, v in f.items()}
                    m, code, reason = f.get("msisdn", ""), f.get("service", ""), f.get("reason", "")
                    if reason == "charge":
                        self._charge[m][f.get("ledger", "")] += 1
                    elif f.get("new") == "cancelled" and f.get("old") in LIVE:
                        self._cancel[m][code] += 1
                    elif reason == "order":
                        self._order[m][code] += 1
                if len(entries) < 10000:
                    break
                ms, seq = _s(entries[-1][0]).split("-")
                start = f"{ms}-{int(seq) + 1}"

    def _key(self, kind: str, msisdn: str) -> str:
        return f"{self.prefix}:{{{zlib.crc32(msisdn.encode()) % self.shards}}}:{kind}:{msisdn}"

    @staticmethod
    def _state(raw: Any) -> str:
        try:
            return str(json.loads(raw).get("state", "?"))
        except (ValueError, AttributeError):
            return "?"

    @staticmethod
    def _menu(raw: Any, now_ms: int) -> Any:
        if raw is None:
            return None
        if raw[:1] == b"\x02":  # the MO state: the conversation (until its end) before the guards
            ends, _sep, raw = raw[1:].split(b"\x01", 1)[0].partition(b"\x00")
            if not raw or int(ends) <= now_ms:
                return None
        try:
            conv = json.loads(raw)
        except ValueError:
            return "unknown"
        if not isinstance(conv, dict) or conv.get("type") != "menu" or not isinstance(conv.get("items"), list):
            return "unknown"
        return [str(x) for x in conv["items"]]

    @staticmethod
    def _fen(raw: Any) -> int:
        try:
            return int(json.loads(raw)["fen"])
        except (ValueError, KeyError, TypeError):
            return -1

    # the interface bench.chaos.model uses
    def subs(self, msisdn: str) -> dict[str, str]:
        return self._subs.get(msisdn, {})

    def menu(self, msisdn: str) -> Any:
        return self._conv.get(msisdn)

    def ledger(self, msisdn: str) -> dict[str, int]:
        return self._ledger.get(msisdn, {})

    def order_recorded(self, msisdn: str, order_id: str) -> bool:
        return order_id in self._orders.get(msisdn, set())

    def cancel_audits(self, msisdn: str) -> Counter[str]:
        return self._cancel.get(msisdn, Counter())

    def order_audits(self, msisdn: str) -> Counter[str]:
        return self._order.get(msisdn, Counter())

    def charge_audits(self, msisdn: str) -> Counter[str]:
        return self._charge.get(msisdn, Counter())
