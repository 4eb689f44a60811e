"""The one error CMPP decoding raises: bytes that can never be read as the PDU they claim to be.

Everything else a gateway gets wrong (padding, a Msg_Length at odds with the body, an unknown
Msg_Fmt) is accepted and kept (see `smsbot.cmpp.codec`). Encoding refuses bad values from our own
code with a plain `ValueError` instead: that is a bug of the caller, not of the peer.
"""

from __future__ import annotations


class CmppError(ValueError):
    """A CMPP PDU (or a stream of them) that can never be read."""


class FramingError(CmppError):
    """The byte stream cannot be cut into PDUs (a Total_Length below 12 or above the limit): drop
    the connection. `frames` holds the complete PDUs framed before the bad header in the same
    `Framer.feed` call."""

    def __init__(self, msg: str, frames: list | None = None) -> None:
        super().__init__(msg)
        self.frames = frames or []
