"""The hot path's socket reads and writes, one system call each.

CPython polls a socket that has a timeout before every ``recv`` and ``send`` on it (to honour the
timeout): one more system call per read or write, even when the transport's ``select`` has just
said the socket is ready. The hot path's sockets (the SMSC link, `smsbot.session`; the Redis round
trips, `smsbot.roundtrip`) keep their timeouts, which a socket with a timeout implements as a
non-blocking file descriptor underneath; these functions first make the plain system call on that
descriptor and fall back to the socket's own method (poll, then the call, the timeout applying)
only when it would block, and always for a TLS socket (its records are not the descriptor's bytes)
or a socket without a timeout (its descriptor blocks).
"""

from __future__ import annotations

import os
import socket


def _plain(sock: socket.socket) -> bool:
    """True when the descriptor carries the bytes and never blocks: a plain socket with a timeout."""
    return type(sock) is socket.socket and sock.gettimeout() is not None


def recv(sock: socket.socket, size: int) -> bytes:
    """Up to `size` bytes the socket has (b'': the peer closed). BlockingIOError when none are
    there yet (a plain socket), else what ``sock.recv`` does."""
    if _plain(sock):
        return os.read(sock.fileno(), size)
    return sock.recv(size)


def recv_into(sock: socket.socket, buf: bytearray, block: bool = False) -> int:
    """Read what the socket has into `buf`; the count (0: the peer closed). When none is there yet:
    BlockingIOError, or with `block` wait for it as ``sock.recv_into`` does (its timeout applies)."""
    if _plain(sock):
        try:
            return os.readv(sock.fileno(), (buf,))
        except BlockingIOError:
            if not block:
                raise
    return sock.recv_into(buf)


def sendall(sock: socket.socket, data: bytes) -> None:
    """Write all of `data`: as much as the descriptor takes at once, the rest (rare: the socket's
    buffer is full) through ``sock.sendall``, which waits for room (its timeout applies)."""
    if _plain(sock):
        try:
            sent = os.write(sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        data = memoryview(data)[sent:]
    sock.sendall(data)
