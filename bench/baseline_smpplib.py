"""The baseline: a bare smpplib 2.2.4 ESME that answers every deliver_sm with one fixed submit_sm.

This module owns the reference point the benchmark divides smsbot's rate by. It is run as its own
process (``python -m bench.baseline_smpplib --port PORT``) against the load SMSC and does nothing
but what smpplib's own API offers: bind transceiver, then ``listen()``; inside
``message_received_handler`` one ``client.send_message(...)`` with a fixed text addressed to the
MO's sender (so the load SMSC can match it); smpplib then sends the deliver_sm_resp itself. No
state, no Redis, no batching, logging left at smpplib's default (nothing configured, so its
per-PDU DEBUG lines are not emitted).

It exits 0 when the SMSC closes the connection, and on SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys

import smpplib.client
import smpplib.consts
import smpplib.exceptions

REPLY_TEXT = b"Thank you. This is the fixed baseline reply from 10086."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--system-id", default="smsbot")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--source-addr", default="10086")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    client = smpplib.client.Client(args.host, args.port, timeout=30, allow_unknown_opt_params=True)

    def on_mo(pdu, **_kw):
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_UNK,
            source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
            source_addr=args.source_addr,
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr=pdu.source_addr.decode("ascii"),
            short_message=REPLY_TEXT,
            data_coding=smpplib.consts.SMPP_ENCODING_DEFAULT,
        )
        # returning None -> smpplib answers deliver_sm_resp with ESME_ROK

    client.set_message_received_handler(on_mo)
    # the default handler logs a WARNING per submit_sm_resp; a bare client would silence it too
    client.set_message_sent_handler(lambda pdu, **_kw: None)

    try:
        client.connect()
        client.bind_transceiver(system_id=args.system_id, password=args.password)
        client.listen()
    except (smpplib.exceptions.ConnectionError, ConnectionError, OSError):
        return 0  # the load SMSC closed the link: the run is over
    finally:
        try:
            if client._socket is not None:  # noqa: SLF001 - smpplib has no public "is open"
                client.disconnect()
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
