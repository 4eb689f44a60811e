"""The handset mailbox of the simulated SMSC, and the reassembly of long MTs into whole messages.

Like a real SMSC holding messages for a phone that is switched off, every whole MT waits for its
destination MSISDN until a handset picks it up. A pick-up returns every message not yet shown and
marks them shown (each message is shown once); shown messages stay in a short history.

`Reassembler` joins the parts of a concatenated MT (UDH or sar_* TLVs), keyed by
(source, destination, ref), into one payload once every part is in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

HISTORY_PER_MSISDN = 100
PENDING_PER_MSISDN = 1000  # oldest pending message is dropped beyond this (counted in `dropped`)


@dataclass(slots=True)
class StoredMessage:
    """One whole MT as a handset sees it."""

    id: str  # message_id of the first part
    sender: str  # source_addr (the short code)
    to: str  # destination_addr (the MSISDN)
    text: str
    parts: int
    data_coding: int
    received_at: float  # epoch seconds when the last part arrived
    message_ids: list[str] = field(default_factory=list)  # message_id of every part, in part order

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "to": self.to,
            "text": self.text,
            "parts": self.parts,
            "data_coding": self.data_coding,
            "received_at": self.received_at,
            "message_ids": list(self.message_ids),
        }


class Mailbox:
    """Thread-safe per-MSISDN store of whole MTs with a blocking pick-up."""

    def __init__(self, pending_limit: int = PENDING_PER_MSISDN, history: int = HISTORY_PER_MSISDN):
        self._cond = threading.Condition()
        self._pending: dict[str, deque[StoredMessage]] = {}
        self._history: dict[str, deque[StoredMessage]] = {}
        self._pending_limit = pending_limit
        self._history_len = history
        self._closed = False
        self.dropped = 0
        # called (outside the lock) with (msisdn, messages) after each pick-up that took some
        self.on_take: Callable[[str, list[StoredMessage]], None] | None = None

    def put(self, msg: StoredMessage) -> None:
        with self._cond:
            q = self._pending.setdefault(msg.to, deque())
            if len(q) >= self._pending_limit:
                q.popleft()
                self.dropped += 1
            q.append(msg)
            self._cond.notify_all()

    def pending_count(self, msisdn: str) -> int:
        with self._cond:
            return len(self._pending.get(msisdn, ()))

    def peek(self, msisdn: str) -> list[StoredMessage]:
        """Messages not yet shown, without marking them."""
        with self._cond:
            return list(self._pending.get(msisdn, ()))

    def history(self, msisdn: str) -> list[StoredMessage]:
        """Recently shown messages, oldest first."""
        with self._cond:
            return list(self._history.get(msisdn, ()))

    def take(self, msisdn: str, wait: float = 0.0, burst: float = 0.2) -> list[StoredMessage]:
        """Return (and mark shown) every pending message for `msisdn`.

        When none is pending, wait up to `wait` seconds for the first; once something is there,
        linger `burst` seconds more so the rest of a burst (several replies) comes along.
        Returns early with what it has when the mailbox is closed.
        """
        deadline = time.monotonic() + max(0.0, wait)
        with self._cond:
            while not self._pending.get(msisdn) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._pending.get(msisdn) and wait > 0 and burst > 0:
                end = time.monotonic() + burst
                while not self._closed:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            q = self._pending.pop(msisdn, None)
            if not q:
                return []
            out = list(q)
            hist = self._history.setdefault(msisdn, deque(maxlen=self._history_len))
            hist.extend(out)
        if self.on_take is not None:
            self.on_take(msisdn, out)
        return out

    def close(self) -> None:
        """Wake every waiting `take` (used by the simulator's stop)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(slots=True)
class _Partial:
    total: int
    data_coding: int
    first_seen: float
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # seq -> (payload, message_id)


class Reassembler:
    """Joins the parts of concatenated messages; stale incomplete sets are dropped after `timeout`."""

    def __init__(self, timeout: float = 600.0):
        self._lock = threading.Lock()
        self._partials: dict[tuple[str, str, int, int], _Partial] = {}
        self._timeout = timeout
        self.expired = 0

    def add(
        self, source: str, dest: str, ref: int, total: int, seq: int, data_coding: int, payload: bytes, message_id: str
    ) -> tuple[bytes, int, list[str]] | None:
        """Add one part; when the set is complete return (joined payload, data_coding, part message_ids)."""
        now = time.monotonic()
        key = (source, dest, ref, total)
        with self._lock:
            self._expire(now)
            p = self._partials.get(key)
            if p is None:
                p = self._partials[key] = _Partial(total=total, data_coding=data_coding, first_seen=now)
            p.parts[seq] = (payload, message_id)
            if len(p.parts) < total or any(i not in p.parts for i in range(1, total + 1)):
                return None
            del self._partials[key]
        ordered = [p.parts[i] for i in range(1, total + 1)]
        return b"".join(b for b, _ in ordered), p.data_coding, [m for _, m in ordered]

    def _expire(self, now: float) -> None:
        stale = [k for k, p in self._partials.items() if now - p.first_seen > self._timeout]
        for k in stale:
            del self._partials[k]
            self.expired += 1

    def incomplete(self) -> int:
        with self._lock:
            return len(self._partials)
