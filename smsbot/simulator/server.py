"""A simulated server's TCP side, whatever the protocol: the listening socket and its accept loop
(`Listener`), and the connections it holds (`Connections`: added as accepted, picked in turn for
what goes out, closed and joined at the end). The SMSC (`smsc`) and the ISMG (`ismg`) each have one
of both.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any, Callable, Generic, TypeVar

from .connection import Connection

log = logging.getLogger("smsbot.simulator")

C = TypeVar("C", bound=Connection)


class Listener:
    """A listening TCP socket on `host`:`port` (0: the OS picks; `port` is the real one), open from
    construction (an OSError when the port is taken)."""

    def __init__(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.25)
        self._sock = sock
        self.port: int = sock.getsockname()[1]

    def accept_until(self, stopping: threading.Event, accepted: Callable[[socket.socket, Any], bool]) -> None:
        """Accept connections (TCP_NODELAY) and hand each to `accepted(sock, addr)` until `stopping`
        is set, the socket is closed, or `accepted` says False."""
        while not stopping.is_set():
            try:
                sock, addr = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not accepted(sock, addr):
                break

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass


class Connections(Generic[C]):
    """The connections a server holds. Closed ones are forgotten once their reader has ended."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self._lock = threading.Lock()
        self._conns: list[C] = []
        self._turn = 0

    def add(self, conn: C) -> bool:
        """Hold `conn` and start its reader; False (its socket closed) once the server is stopping."""
        with self._lock:
            if self._stopping.is_set():
                conn.sock.close()
                return False
            self._conns = [c for c in self._conns if not c.closed.is_set() or c.thread.is_alive()] + [conn]
        conn.thread.start()
        log.info("%s conn %s from %s", conn.label, conn.id, conn.addr)
        return True

    def open(self, which: Callable[[C], bool] | None = None) -> list[C]:
        """The connections not closed (that `which` accepts)."""
        with self._lock:
            return [c for c in self._conns if not c.closed.is_set() and (which is None or which(c))]

    def pick(self, which: Callable[[C], bool]) -> C | None:
        """The next of the connections `which` accepts, in turn (None: there is none)."""
        with self._lock:
            ready = [c for c in self._conns if which(c)]
            if not ready:
                return None
            self._turn = (self._turn + 1) % len(ready)
            return ready[self._turn]

    def holds_open(self, sock: socket.socket) -> bool:
        with self._lock:
            return any(c.sock is sock and not c.closed.is_set() for c in self._conns)

    def close_all(self, join_timeout: float) -> None:
        """Close every connection and wait for their readers (each at most `join_timeout`)."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.close()
        for c in conns:
            if c.thread.is_alive() and c.thread is not threading.current_thread():
                c.thread.join(timeout=join_timeout)
