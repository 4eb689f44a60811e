"""The record of every billing run (``<prefix>:billing:runs``) and its state: running (lease
alive), abandoned (unfinished, lease expired: resumable), interrupted (resumable at once), finished,
superseded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from smsbot.store import Store, _s


@dataclass(frozen=True)
class RunRecord:
    """One entry of ``<prefix>:billing:runs``, with its state (see the module doc)."""

    id: str
    period: str
    at: int
    started: int
    finished: int | None
    state: str  # running | abandoned | interrupted | finished | superseded
    lease_alive: bool
    cursor: str | None
    total: int
    resumed: int
    raw: dict[str, Any]

    @property
    def resumable(self) -> bool:
        return self.state in ("abandoned", "interrupted")


def _to_record(run_id: str, rec: dict[str, Any], lease_alive: bool) -> RunRecord:
    finished = rec.get("finished") or None
    stored = rec.get("state")
    if finished:
        state = "finished"
    elif stored == "superseded":
        state = "superseded"
    elif lease_alive:
        state = "running"
    elif stored == "interrupted":
        state = "interrupted"
    else:
        state = "abandoned"  # running with no lease: killed; or a record from before leases existed
    return RunRecord(run_id, str(rec.get("period", "")), int(rec.get("at") or 0), int(rec.get("started") or 0),
                     int(finished) if finished else None, state, lease_alive, rec.get("cursor"),
                     int(rec.get("total") or 0), int(rec.get("resumed") or 0), rec)


def _load_run(store: Store, run_id: str) -> RunRecord | None:
    raw = store.redis.hget(store.keys.billing_runs(), run_id)
    if raw is None:
        return None
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return _to_record(run_id, rec, bool(store.redis.exists(store.keys.billing_run_lease(run_id))))


def list_runs(store: Store) -> list[RunRecord]:
    """Every recorded run with its state, oldest start first."""
    raw = _runs(store)
    if not raw:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for r in raw:
        pipe.exists(store.keys.billing_run_lease(r["id"]))
    alive = pipe.execute()
    out = [_to_record(r["id"], r, bool(a)) for r, a in zip(raw, alive)]
    out.sort(key=lambda r: (r.started, r.id))
    return out


def _runs(store: Store) -> list[dict[str, Any]]:
    out = []
    for k, v in store.redis.hgetall(store.keys.billing_runs()).items():
        try:
            rec = json.loads(v)
        except ValueError:
            continue
        rec["id"] = _s(k)
        out.append(rec)
    return out
