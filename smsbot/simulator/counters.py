"""A simulator's counters (what `stats()` shows): named integers, changed from any thread."""

from __future__ import annotations

import threading
from typing import Iterable


class Counters:
    def __init__(self, names: Iterable[str] = ()) -> None:
        """`names` start at 0 (and are shown before they ever count); others appear when counted."""
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def set(self, name: str, value: int) -> None:
        with self._lock:
            self._values[name] = value

    def raise_to(self, name: str, value: int) -> None:
        """`name` becomes `value` if that is more (a high-water mark)."""
        with self._lock:
            self._values[name] = max(self._values.get(name, 0), value)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)
