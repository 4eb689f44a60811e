"""The CMPP baseline: a minimal CMPP SP loop that answers every DELIVER with one fixed SUBMIT.

The reference point for smsbot's CMPP rows, as `bench.baseline_smpplib` is for SMPP's; there is
no maintained CMPP client library, so it is the barest loop on smsbot's CMPP codec: CONNECT
(AuthenticatorISMG checked), then read; for each DELIVER a DELIVER_RESP (Result 0) and one SUBMIT
of a fixed ASCII text to its sender, written together; ACTIVE_TEST answered; nothing else (no
state, no Redis, no window). Run as ``python -m bench.baseline_cmpp --port PORT [--version 0x20]``;
exits 0 when the gateway closes the connection, and on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from datetime import datetime

from smsbot import cmpp
from smsbot.cmpp import auth

REPLY_TEXT = b"Thank you. This is the fixed baseline reply from 10086."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--version", type=lambda v: int(v, 0), default=0x30)
    ap.add_argument("--sp-id", default="901234")
    ap.add_argument("--secret", default="secret")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    v = a.version
    sock = socket.create_connection((a.host, a.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ts = auth.timestamp(datetime.now())
    source = auth.authenticator_source(a.sp_id, a.secret, ts)
    sock.sendall(cmpp.encode(cmpp.Connect(a.sp_id, source, v, ts), 1, v))
    framer = cmpp.Framer()
    seq = 1
    connected = False
    try:
        while data := sock.recv(1 << 16):
            out = []
            for f in framer.feed(data):
                if f.command_id == cmpp.CommandId.DELIVER:
                    d = cmpp.decode(f.command_id, f.body, v)
                    assert isinstance(d, cmpp.Deliver)
                    out.append(cmpp.encode(cmpp.DeliverResp(d.msg_id, 0), f.sequence, v))
                    if d.report is None:
                        seq += 1
                        out.append(cmpp.encode(cmpp.Submit([d.src_terminal_id], REPLY_TEXT, src_id=d.dest_id, msg_src=a.sp_id),
                                               seq, v))
                elif f.command_id == cmpp.CommandId.ACTIVE_TEST:
                    out.append(cmpp.encode(cmpp.ActiveTestResp(), f.sequence, v))
                elif f.command_id == cmpp.CommandId.CONNECT_RESP and not connected:
                    resp = cmpp.decode(f.command_id, f.body, v)
                    assert isinstance(resp, cmpp.ConnectResp)
                    if resp.status or not auth.ismg_ok(0, source, a.secret, v, resp.authenticator):
                        print(f"CONNECT refused or the gateway failed AuthenticatorISMG (Status {resp.status})", file=sys.stderr)
                        return 1
                    connected = True
            if out:
                sock.sendall(b"".join(out))
    except OSError:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
