"""The live charts of the bot's ``/status`` page: MO/s, MT/s and queue lag over the last minutes.

`Sampler` reads the bot's own counters once a second (a thread of the bot): MOs handled and MTs
accepted by the SMSC (totals since start), the parts waiting in this instance, and the outbox
depth and the age of its oldest entry from Redis (`smsbot.queue_lag`, all instances). It keeps the
last `HISTORY` samples; `series()` turns them into per-second rates for ``GET /status/series``.
The page (``GET /status``, `page()`) and its script (``GET /status/charts.js``, `script()`) come
from ``smsbot/web/`` in the package — nothing is fetched from elsewhere — and draw the series as
inline SVG, polling once a second. The metrics listener (`smsbot.metrics.MetricsServer`) serves them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from smsbot import log

_log = log.get("smsbot.status")

HISTORY = 300  # samples kept: five minutes at one a second
INTERVAL_S = 1.0
WEB = Path(__file__).parent / "web"  # package data (pyproject: smsbot = [..., "web/*"])


@dataclass(frozen=True)
class Reading:
    """What the bot's objects say at one moment (`Bot.status_reading`)."""

    mo_total: int  # MOs handled since start
    mt_total: int  # MTs the SMSC accepted since start
    waiting_here: int  # parts queued in this instance, not yet sent
    depth: int | None  # outbox and queue entries in Redis (all instances); None when Redis did not answer
    oldest_age_s: float | None  # age of the oldest of them; None when none (or Redis did not answer)
    bound: bool
    redis: bool


class Sampler:
    """Samples `read()` every `interval` seconds on its own thread (or by `sample()`, in tests)."""

    def __init__(self, read: Callable[[], Reading], *, interval: float = INTERVAL_S, history: int = HISTORY,
                 clock: Callable[[], float] = time.time):
        self.read = read
        self.interval = interval
        self.clock = clock
        self._samples: deque[tuple[float, Reading]] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = log.Throttled(_log, "status_sample_failed", 60.0)

    def sample(self) -> None:
        reading = self.read()
        with self._lock:
            self._samples.append((self.clock(), reading))

    def series(self) -> dict[str, Any]:
        """Per-second MO and MT rates between consecutive samples, and the queue lag at each."""
        with self._lock:
            samples = list(self._samples)
        points = []
        for (t0, r0), (t1, r1) in zip(samples, samples[1:]):
            span = t1 - t0
            if span <= 0:
                continue
            points.append({"t": round(t1, 3),
                           "mo_per_s": round(max(0, r1.mo_total - r0.mo_total) / span, 2),
                           "mt_per_s": round(max(0, r1.mt_total - r0.mt_total) / span, 2),
                           "waiting_here": r1.waiting_here, "depth": r1.depth, "oldest_age_s": r1.oldest_age_s})
        last = samples[-1][1] if samples else None
        return {"interval_s": self.interval, "history": self._samples.maxlen, "points": points,
                "mo_total": last.mo_total if last else 0, "mt_total": last.mt_total if last else 0,
                "bound": bool(last and last.bound), "redis": bool(last and last.redis)}

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="status-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while True:
            try:
                self.sample()
                self._failing.recovered()
            except Exception as e:  # a bug (the reader answers a Redis failure itself): a gap in the charts, said in the log
                self._failing.hit(error=repr(e))
            if self._stop.wait(self.interval):
                return


def page(instance: str) -> bytes:
    """The page, with this instance's name in it (escaped)."""
    import html

    text = (WEB / "status.html").read_text(encoding="utf-8")
    return text.replace("{{instance}}", html.escape(instance)).encode("utf-8")


def script() -> bytes:
    return (WEB / "status.js").read_bytes()
