"""One accepted TCP connection of a simulated server, whatever the protocol (SMPP's `smpp_conn`,
CMPP's `ismg_conn` build on it).

It owns the socket and its reader thread: bytes are cut into PDUs by the protocol's framer and
each is handed to `_handle`; a read timeout (`tick`) calls `_idle` (keep-alives, deadlines); a
stream that cannot be framed goes to `_framing_failed` and ends the connection. Writes from any
thread go through one lock (`_write`, with an optional `commit` run under it just before the
write, so a state change and the PDU announcing it cannot be split by another write or a drop).
A PDU whose answer is awaited (`_exchange`) registers a `Waiter` under its sequence number; the
reader sets it (`_answered`), and closing the connection wakes every waiter. `close` tells the
subclass (`_closed`) once.

Two ways of misbehaving, for fault modes, are common to both protocols:
`wedge(data)` writes `data` (a partial PDU) and then falls silent: nothing more is written or
answered, what the peer sends is read and discarded (`quiet`), and the TCP connection stays open
until the peer closes it. `drop(reason)` ends the connection "abruptly" (nothing more is answered
or stored) but with a FIN after what was already written, never a TCP reset: a resp sent before
the drop reaches the peer; the reader closes once the peer has, or after DROP_LINGER_S
(`_quiet_idle`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable, ClassVar, TypeVar

log = logging.getLogger("smsbot.simulator")
DROP_LINGER_S = 2.0  # after drop(): how long to wait for the peer to close its side


class Waiter:
    """The answer to one PDU we sent: `event` is set when it arrives or the connection goes."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()


W = TypeVar("W", bound=Waiter)


class Connection:
    """Subclasses set `label` (log lines, thread names), `tick`, `framing_error` (what their framer
    raises), an `_ids` counter, and implement `_handle`, `_idle`, `_framing_failed`, `_closed`."""

    label: ClassVar[str]
    tick: ClassVar[float]  # seconds a read waits before `_idle`
    framing_error: ClassVar[type[Exception]]
    _ids: ClassVar[Any]  # itertools.count per protocol: connection ids are numbered per simulator kind

    def __init__(self, sock: socket.socket, addr: Any, framer: Any, stopping: threading.Event) -> None:
        self.sock = sock
        self.addr = addr
        self.id = next(self._ids)
        self._framer = framer
        self._stopping = stopping
        self._wlock = threading.Lock()
        self._waiters: dict[int, Waiter] = {}
        self.closed = threading.Event()
        self.last_rx = time.monotonic()
        self.dropping = False  # drop() was called: read and discard until the peer closes
        self.wedged = False  # wedge() was called: silent, reads discarded, stays open
        self._drop_deadline = 0.0
        self.thread = threading.Thread(target=self._run, name=f"{self.label}-conn-{self.id}", daemon=True)

    # -- writing
    def _writable(self) -> bool:
        return not (self.closed.is_set() or self.dropping or self.wedged)

    @property
    def quiet(self) -> bool:
        """Dropping or wedged: what the peer sends is read and never answered."""
        return self.dropping or self.wedged

    def _write(self, data: bytes, commit: Callable[[], None] | None = None) -> bool:
        """Write `data` unless the connection cannot take it (False then); `commit` runs under the
        write lock just before. A failed write closes the connection."""
        with self._wlock:
            if not self._writable():
                return False
            if commit is not None:
                commit()
            try:
                self.sock.sendall(data)
                return True
            except OSError as e:
                log.info("%s conn %s write failed: %s", self.label, self.id, e)
        self.close()
        return False

    def _exchange(self, sequence: int, waiter: W, data: bytes, timeout: float) -> W:
        """Write `data` (a PDU with `sequence`) and wait up to `timeout` for its answer in `waiter`."""
        self._waiters[sequence] = waiter
        try:
            if self._write(data):
                waiter.event.wait(timeout)
        finally:
            if self._waiters.get(sequence) is waiter:
                del self._waiters[sequence]
        return waiter

    def _answered(self, sequence: int) -> Waiter | None:
        """The waiter of the PDU `sequence` answers, if one waits (the reader sets it)."""
        return self._waiters.get(sequence)

    def _wake_waiters(self) -> None:
        for w in list(self._waiters.values()):
            w.event.set()

    def wedge(self, data: bytes) -> bool:
        """Write `data` (a partial PDU), then fall silent (see the module doc). False when the
        connection is already closed, dropping or wedged, or the write failed (it is closed then)."""
        if not self._write(data, commit=self._fall_silent):
            return False
        log.info("%s conn %s wedged after a partial PDU of %d octets", self.label, self.id, len(data))
        self._wake_waiters()
        return True

    def send_partial(self, partial_pdu: Callable[[int, int, int], bytes], announced: int, octets: int) -> dict[str, Any]:
        """A PDU header announcing `announced` octets and `octets` of body (`partial_pdu(sequence,
        announced, octets)`, the protocol's), then silence (`wedge`). ValueError: sizes the protocol
        cannot frame; ConnectionError: the connection closed first. Returns {"conn", "sequence",
        "announced", "octets"}."""
        seq = self.next_seq()  # the protocol's connection numbers its PDUs
        if not self.wedge(partial_pdu(seq, announced, octets)):
            raise ConnectionError(f"connection {self.id} closed before the partial PDU was written")
        return {"conn": self.id, "sequence": seq, "announced": announced, "octets": octets}

    def _fall_silent(self) -> None:
        self.wedged = True

    def drop(self, reason: str) -> bool:
        """Stop answering and send FIN (see the module doc); False when already dropping or closed."""
        with self._wlock:  # after any write in progress, so that write is not cut
            if self.dropping or self.closed.is_set():
                return False
            self.dropping = True
            self._drop_deadline = time.monotonic() + DROP_LINGER_S
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        log.info("%s conn %s dropped (%s)", self.label, self.id, reason)
        self._wake_waiters()
        return True

    def _quiet_idle(self) -> bool:
        """For `_idle`: True when the connection is quiet (nothing else is due), closing a dropped
        one once its linger is over."""
        if self.dropping and time.monotonic() >= self._drop_deadline:
            self.close()
        return self.quiet

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for how in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                how()
            except OSError:
                pass
        self._wake_waiters()
        self._closed()

    # -- reading
    def _run(self) -> None:
        self.sock.settimeout(self.tick)
        try:
            while not self.closed.is_set() and not self._stopping.is_set():
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    self._idle()
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.last_rx = time.monotonic()
                try:
                    frames = self._framer.feed(data)
                except self.framing_error as e:
                    self._framing_failed(e)
                    break
                for frame in frames:
                    self._handle(frame)
                    if self.closed.is_set():
                        break
        except Exception:  # noqa: BLE001 - a simulator bug must not go unnoticed, nor kill the process
            log.exception("%s conn %s reader crashed", self.label, self.id)
        finally:
            self.close()

    # -- the protocol's part
    def _handle(self, frame: Any) -> None:
        raise NotImplementedError

    def _idle(self) -> None:
        raise NotImplementedError

    def _framing_failed(self, error: Any) -> None:
        """The stream cannot be framed (`error` carries the PDUs framed before); the connection ends."""
        raise NotImplementedError

    def _closed(self) -> None:
        raise NotImplementedError
