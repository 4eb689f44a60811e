"""CONNECT authentication: the timestamp, AuthenticatorSource (SP) and AuthenticatorISMG (gateway).

* Timestamp: MMDDHHMMSS of the moment of connecting, as 10 ASCII digits inside the digest and as
  the integer with those digits in the CONNECT body (0314093000 → 314093000).
* AuthenticatorSource = MD5(Source_Addr + 9 octets of 0x00 + shared secret + timestamp digits).
* AuthenticatorISMG = MD5(Status + AuthenticatorSource + shared secret), Status written as wide as
  the version's CONNECT_RESP has it (3.0: 4 octets, 2.0: 1). A gateway that refuses an SP sends
  16 zero octets instead.

The shared secret is text (the configured password) encoded as UTF-8, the only encoding it is
ever given in. Comparisons use `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from .errors import CmppError
from .fields import layout

EMPTY = bytes(16)  # AuthenticatorISMG of a refused CONNECT


def timestamp(moment: datetime) -> int:
    """The CONNECT Timestamp of `moment`: MMDDHHMMSS as an integer."""
    return int(moment.strftime("%m%d%H%M%S"))


def timestamp_digits(value: int) -> bytes:
    """The 10 ASCII digits the digest uses for Timestamp `value` (leading zero kept)."""
    if not 0 <= value <= 9999999999:
        raise CmppError(f"Timestamp {value} has more than 10 digits")
    return b"%010d" % value


def authenticator_source(source_addr: str, secret: str, ts: int) -> bytes:
    """AuthenticatorSource of SP `source_addr` with `secret` at Timestamp `ts`."""
    return hashlib.md5(source_addr.encode("latin-1") + bytes(9) + secret.encode("utf-8")
                       + timestamp_digits(ts)).digest()


def authenticator_ismg(status: int, source_auth: bytes, secret: str, version: int) -> bytes:
    """AuthenticatorISMG for `status` answering AuthenticatorSource `source_auth`."""
    width = layout(version).result
    return hashlib.md5(status.to_bytes(width, "big") + source_auth + secret.encode("utf-8")).digest()


def source_ok(source_addr: str, secret: str, ts: int, given: bytes) -> bool:
    """The gateway's check of a CONNECT's AuthenticatorSource."""
    try:
        expected = authenticator_source(source_addr, secret, ts)
    except CmppError:
        return False
    return hmac.compare_digest(expected, given)


def ismg_ok(status: int, source_auth: bytes, secret: str, version: int, given: bytes) -> bool:
    """The SP's check of a CONNECT_RESP's AuthenticatorISMG (`version`: the one the SP asked for)."""
    return hmac.compare_digest(authenticator_ismg(status, source_auth, secret, version), given)
