"""The simulated SMSC's TLS: one proxy thread per accepted connection terminates TLS and passes the
plain bytes to an ordinary connection over a socketpair, so the SSL object is only ever used by one
thread (the connection's reader and its writers never touch it).
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from typing import Any, Callable

log = logging.getLogger("smsbot.simulator")

HANDSHAKE_TIMEOUT = 10.0


def proxy(
    raw: socket.socket,
    addr: Any,
    context: ssl.SSLContext,
    *,
    serve: Callable[[socket.socket], bool],
    still_served: Callable[[socket.socket], bool],
    stopping: threading.Event,
    count: Callable[[str], None],
) -> None:
    """Terminate TLS for the accepted socket `raw`: the handshake (counted as ``tls_handshakes`` or
    ``tls_handshake_failures``), then bytes both ways between the TLS socket and a socketpair whose
    inner end `serve` makes a connection of (False: none, the proxy ends). Runs until both
    directions are closed, or ours is and `still_served(inner)` says the connection is gone, or
    `stopping`. EOF on either side is passed on as a FIN (a `SmppConn.drop` stays a drop)."""
    raw.settimeout(HANDSHAKE_TIMEOUT)
    try:
        tls = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        tls.do_handshake()
    except (OSError, ValueError) as e:
        log.info("simsmsc TLS handshake with %s failed: %s", addr, e)
        count("tls_handshake_failures")
        raw.close()
        return
    count("tls_handshakes")
    tls.settimeout(30.0)  # only bounds a TLS record left half-written by the ESME
    inner, outer = socket.socketpair()
    if not serve(inner):
        for s in (outer, tls):
            s.close()
        return
    to_plain = True  # the ESME's direction still open
    to_tls = True  # ours still open
    try:
        while (to_plain or to_tls) and not stopping.is_set():
            watch = ([tls] if to_plain else []) + ([outer] if to_tls else [])
            if to_plain and tls.pending():
                ready = [tls]
            else:
                ready, _, _ = select.select(watch, [], [], 0.25)
            if tls in ready:
                try:
                    data = tls.recv(65536)
                except ssl.SSLWantReadError:
                    data = None
                except OSError:
                    data = b""
                if data is None:
                    pass
                elif data:
                    outer.sendall(data)
                else:
                    to_plain = False
                    try:
                        outer.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
            if outer in ready:
                try:
                    data = outer.recv(65536)
                except OSError:
                    data = b""
                if data:
                    tls.sendall(data)
                else:
                    to_tls = False
                    try:
                        raw.shutdown(socket.SHUT_WR)  # a FIN, as for a plain connection
                    except OSError:
                        pass
            if not to_tls and to_plain and not still_served(inner):
                break  # our side is closed and gone: nothing more to pass on
    except OSError as e:
        log.info("simsmsc TLS proxy for %s ended: %s", addr, e)
    finally:
        for s in (outer, tls):
            try:
                s.close()
            except OSError:
                pass
