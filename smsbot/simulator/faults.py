"""Fault injection for the simulators' submit side (SMPP submit_sm, CMPP SUBMIT): slow, throttling,
rejecting, dropping.

- `FaultPlan`: the validated knobs (documented in `control`'s ``POST /faults``); a status is
  SMPP's command_status or CMPP's Result, whichever the simulator speaks (`Faults(throttle_status=,
  status_max=)`: CMPP throttles with Result 8 and a 2.0 Result has one octet).
- `Faults`: the active plan and the verdict on each submit_sm (`judge`), under one lock.
- `Delayer`: one thread running delayed submit_sm_resp work at its due time, in order.
- `peak_rate`: the most submits within any window of one second (for tests of a TPS limit).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from smsbot.messages import Status

log = logging.getLogger("smsbot.simulator")
MAX_DELAY_MS = 60_000


class FaultError(ValueError):
    """A bad fault setting."""


def _int(name: str, v: Any, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise FaultError(f'"{name}" must be an integer >= {lo}')
    return v


def _num(name: str, v: Any, lo: float = 0.0, hi: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (hi is not None and v > hi):
        raise FaultError(f'"{name}" must be a number >= {lo:g}' + (f" and <= {hi:g}" if hi is not None else ""))
    return float(v)


def _status(name: str, v: Any, status_max: int = 0xFFFFFFFF) -> int:
    if isinstance(v, str):
        try:
            v = int(v, 16) if v.lower().startswith("0x") else int(v)
        except ValueError:
            raise FaultError(f'"{name}": bad status {v!r} (an integer or hex like "0x0B")') from None
    v = _int(name, v, 1)
    if v > status_max:
        raise FaultError(f'"{name}": status out of range (at most {status_max})')
    return v


@dataclass(frozen=True)
class FaultPlan:
    resp_delay_ms: float = 0.0
    throttle_every: int = 0
    throttle_first: int = 0
    throttle_status: int = int(Status.RTHROTTLED)
    max_tps: float = 0.0
    reject: dict[str, int] = field(default_factory=dict)
    drop_after_submit: int = 0
    drop_after_resp: int = 0

    @classmethod
    def parse(cls, kw: dict[str, Any], throttle_status: int = int(Status.RTHROTTLED),
              status_max: int = 0xFFFFFFFF) -> FaultPlan:
        """The plan `kw` asks for; `throttle_status` is the default status of throttled submits
        (and of ``max_tps``), `status_max` the largest status the protocol can carry."""
        unknown = set(kw) - set(cls.__dataclass_fields__)
        if unknown:
            raise FaultError(f"unknown fault(s): {', '.join(sorted(unknown))}; known: {', '.join(cls.__dataclass_fields__)}")
        reject = kw.get("reject") or {}
        if not isinstance(reject, dict) or not all(isinstance(k, str) and k for k in reject):
            raise FaultError('"reject" must be an object {"MSISDN": status, ...}')
        return cls(
            resp_delay_ms=_num("resp_delay_ms", kw.get("resp_delay_ms", 0), 0, MAX_DELAY_MS),
            throttle_every=_int("throttle_every", kw.get("throttle_every", 0)),
            throttle_first=_int("throttle_first", kw.get("throttle_first", 0)),
            throttle_status=_status("throttle_status", kw.get("throttle_status", throttle_status), status_max),
            max_tps=_num("max_tps", kw.get("max_tps", 0)),
            reject={k: _status(f"reject.{k}", v, status_max) for k, v in reject.items()},
            drop_after_submit=_int("drop_after_submit", kw.get("drop_after_submit", 0)),
            drop_after_resp=_int("drop_after_resp", kw.get("drop_after_resp", 0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Verdict:
    n: int  # this submit_sm's number since the plan was set (1-based)
    status: int = 0  # 0: accept and store; else answer with this status, store nothing
    drop_before: bool = False  # close the connection instead of answering (nothing stored)
    drop_after: bool = False  # close the connection right after the resp
    delay: float = 0.0  # seconds before the resp


class Faults:
    """The active `FaultPlan` and its counters; `judge` is called once per well-formed submit_sm."""

    def __init__(self, throttle_status: int = int(Status.RTHROTTLED), status_max: int = 0xFFFFFFFF) -> None:
        """`throttle_status`: the protocol's temporary refusal (SMPP ESME_RTHROTTLED, CMPP Result 8),
        the default of ``throttle_status`` and what ``max_tps`` answers; `status_max`: its largest status."""
        self._lock = threading.Lock()
        self.throttle_status = throttle_status
        self.status_max = status_max
        self.plan = FaultPlan(throttle_status=throttle_status)
        self._seen = 0
        self._rate: dict[int, deque[float]] = {}  # conn id -> times of submits let through in the last second

    def set(self, **kw: Any) -> dict[str, Any]:
        """Replace the whole plan (knobs not given are off) and restart its counting."""
        plan = FaultPlan.parse(kw, self.throttle_status, self.status_max)
        with self._lock:
            self.plan, self._seen = plan, 0
            self._rate.clear()
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self.plan.to_dict(), "submits_seen": self._seen}

    def judge(self, conn_id: int, destination: str, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        with self._lock:
            p = self.plan
            self._seen += 1
            v = Verdict(n=self._seen, delay=p.resp_delay_ms / 1000.0)
            if p.drop_after_submit and v.n == p.drop_after_submit:
                v.drop_before = True
                return v
            v.drop_after = bool(p.drop_after_resp and v.n == p.drop_after_resp)
            if (p.throttle_first and v.n <= p.throttle_first) or (p.throttle_every and v.n % p.throttle_every == 0):
                v.status = p.throttle_status
                return v
            if p.max_tps > 0:
                q = self._rate.setdefault(conn_id, deque())
                while q and now - q[0] >= 1.0:
                    q.popleft()
                if len(q) >= p.max_tps:
                    v.status = self.throttle_status
                    return v
                q.append(now)
            v.status = p.reject.get(destination, 0)
            return v


class Delayer:
    """Runs `fn` at monotonic time `due` on one thread; equal due times run in the order given."""

    def __init__(self, name: str = "simsmsc-delay"):
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._n = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call_at(self, due: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._n), fn))
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else max(0.001, self._heap[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _due, _n, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # noqa: BLE001 - one failed resp must not stop the others
                log.exception("simsmsc delayed resp failed")


def peak_rate(times: Iterable[float], window: float = 1.0) -> int:
    """The most timestamps within any half-open interval [t, t + window)."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
