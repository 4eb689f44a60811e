"""Writing to a non-blocking socket, plain or TLS, without a poll before every call.

CPython polls before each send and recv of a socket that has a timeout. The hot path's sockets (the
SMSC links, `smsbot.session`; the Redis round trips, `smsbot.roundtrip`) are non-blocking instead:
a read follows a select that said readable (nothing there after all is `BlockingIOError`, for TLS
`ssl.SSLWantReadError`: part of a record), and a write (`send_all`) goes straight to the kernel,
waiting in select only while the socket has no room: at most `timeout` seconds without progress,
the limit the socket's timeout gave before. `wait_readable` is the same wait for a blocking read.
"""

from __future__ import annotations

import select
import socket
import ssl

NOTHING_YET = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)  # a read that found nothing


def send_all(sock: socket.socket, data: bytes, timeout: float | None) -> None:
    """Write all of `data`: `TimeoutError` when the peer took nothing for `timeout` seconds (None:
    no limit); any other `OSError` as the socket raised it. A TLS write that could not finish is
    retried with the same bytes, as OpenSSL requires."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
            _wait(sock, True, timeout)
            continue
        except ssl.SSLWantReadError:  # TLS needs to read first (a renegotiation or key update)
            _wait(sock, False, timeout)
            continue
        view = view[sent:]


def wait_readable(sock: socket.socket, timeout: float | None) -> None:
    """Until `sock` has something to read (for TLS: bytes already decrypted count); `TimeoutError`
    after `timeout` seconds (None: no limit)."""
    pending = getattr(sock, "pending", None)
    if pending is None or not pending():
        _wait(sock, False, timeout)


def _wait(sock: socket.socket, write: bool, timeout: float | None) -> None:
    ready = select.select([], [sock], [], timeout) if write else select.select([sock], [], [], timeout)
    if not (ready[1] if write else ready[0]):
        raise TimeoutError(f"no room to write within {timeout:g} s" if write else f"nothing to read within {timeout:g} s")
