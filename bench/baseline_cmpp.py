"""The CMPP baseline: smpplib's ESME loop (`bench.baseline_smpplib`) spoken in CMPP, PDU for PDU.

The reference point for smsbot's CMPP rows, as `bench.baseline_smpplib` is for SMPP's. There is
no maintained CMPP client library, so this is smpplib 2.2.4's `Client.listen()` with its I/O kept
and only the codec swapped for smsbot's CMPP one; the CMPP ratios then mean what the SMPP ones
mean. Like smpplib it:

* connects a plain blocking socket with a 30 s timeout and leaves Nagle on (smpplib does not set
  TCP_NODELAY);
* reads one PDU at a time — a `recv` of the 4 length octets, then `recv` until the rest is there
  (`_recv_exact`) — and decodes every PDU it reads, SUBMIT_RESPs included (smpplib parses each
  submit_sm_resp and calls its sent handler);
* answers a DELIVER by first sending one SUBMIT of a fixed ASCII text to its sender (the handler's
  `send_message`, one `sendall`), then the DELIVER_RESP (Result 0; a second `sendall`); a status
  report gets only its DELIVER_RESP; ACTIVE_TEST is answered, and on a 30 s silence it sends one.

So one SUBMIT per MO, each MO answered once, every SUBMIT_RESP read: no state, no Redis, no
window of its own (the load ISMG's window is the only one, as for smpplib). CONNECT is checked
(AuthenticatorISMG). Run as ``python -m bench.baseline_cmpp --port PORT [--version 0x20]``; exits 0
when the gateway closes the connection or sends TERMINATE, and on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import struct
import sys
from datetime import datetime

from smsbot import cmpp
from smsbot.cmpp import auth

REPLY_TEXT = b"Thank you. This is the fixed baseline reply from 10086."
TIMEOUT_S = 30.0  # smpplib's Client(timeout=30), as bench.baseline_smpplib makes it
_LEN = struct.Struct(">I")
_REST = struct.Struct(">II")  # Command_Id, Sequence_Id


class _Closed(Exception):
    """The gateway closed the connection."""


class CmppEsme:
    """One connection read as smpplib reads one: a PDU at a time."""

    def __init__(self, sock: socket.socket, version: int, sp_id: str, secret: str) -> None:
        self.sock, self.version, self.sp_id, self.secret = sock, version, sp_id, secret
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = 1 if self.sequence >= 0x7FFFFFFF else self.sequence + 1
        return self.sequence

    def send(self, pdu: cmpp.Pdu, sequence: int) -> None:
        self.sock.sendall(cmpp.encode(pdu, sequence, self.version))

    def _recv_exact(self, size: int) -> bytes:
        parts, got = [], 0
        while got < size:
            part = self.sock.recv(size - got)
            if not part:
                raise _Closed
            got += len(part)
            parts.append(part)
        return b"".join(parts)

    def read_pdu(self) -> tuple[int, int, cmpp.Pdu]:
        """(Command_Id, Sequence_Id, the decoded PDU) of the next PDU."""
        raw_len = self._recv_exact(4)
        (length,) = _LEN.unpack(raw_len)
        rest = self._recv_exact(length - 4)
        command_id, sequence = _REST.unpack_from(rest)
        return command_id, sequence, cmpp.decode(command_id, rest[8:], self.version)

    def connect(self) -> bool:
        """CONNECT and its CONNECT_RESP: True when accepted and AuthenticatorISMG checks."""
        ts = auth.timestamp(datetime.now())
        source = auth.authenticator_source(self.sp_id, self.secret, ts)
        self.send(cmpp.Connect(self.sp_id, source, self.version, ts), self.next_sequence())
        while True:
            _cid, _seq, resp = self.read_pdu()
            if isinstance(resp, cmpp.ConnectResp):
                return resp.status == 0 and auth.ismg_ok(0, source, self.secret, self.version, resp.authenticator)

    def read_once(self) -> bool:
        """Read one PDU and act on it; False once the gateway said TERMINATE."""
        try:
            _cid, seq, p = self.read_pdu()
        except socket.timeout:
            self.send(cmpp.ActiveTest(), self.next_sequence())
            return True
        if isinstance(p, cmpp.Deliver):
            if p.report is None:  # the handler: one SUBMIT to the MO's sender
                self.send(cmpp.Submit([p.src_terminal_id], REPLY_TEXT, src_id=p.dest_id, msg_src=self.sp_id),
                          self.next_sequence())
            self.send(cmpp.DeliverResp(p.msg_id, 0), seq)
        elif isinstance(p, cmpp.SubmitResp):
            pass  # read and decoded, as smpplib's message_sent_handler gets it
        elif isinstance(p, cmpp.ActiveTest):
            self.send(cmpp.ActiveTestResp(), seq)
        elif isinstance(p, cmpp.Terminate):
            self.send(cmpp.TerminateResp(), seq)
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--version", type=lambda v: int(v, 0), default=0x30)
    ap.add_argument("--sp-id", default="901234")
    ap.add_argument("--secret", default="secret")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as smpplib's _create_socket: no TCP_NODELAY
    sock.settimeout(TIMEOUT_S)
    esme = CmppEsme(sock, a.version, a.sp_id, a.secret)
    try:
        sock.connect((a.host, a.port))
        if not esme.connect():
            print("CONNECT refused or the gateway failed AuthenticatorISMG", file=sys.stderr)
            return 1
        while esme.read_once():
            pass
    except (_Closed, OSError):
        pass  # the gateway closed the link: the run is over
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
