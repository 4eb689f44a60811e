"""When a failed webhook delivery is tried again: exponential backoff with jitter.

After attempt n failed, the next waits a delay drawn uniformly from the upper half of
``min(max, initial * 2**(n-1))`` ("equal jitter"): it grows 1, 2, 4, 8 ... seconds (by default) up
to the cap, never less than half of it, and deliveries that failed together (a receiver outage)
spread out instead of coming back at the same instant. `rand` is injected so the schedule can be
tested exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Backoff:
    initial: float  # seconds, the ceiling after the first failure
    maximum: float  # seconds, the highest ceiling

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt `attempt` (1-based)."""
        return min(self.maximum, self.initial * 2 ** min(max(attempt, 1) - 1, 64))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt `attempt`: within [ceiling / 2, ceiling]."""
        top = self.ceiling(attempt)
        return top / 2 + rand() * top / 2
