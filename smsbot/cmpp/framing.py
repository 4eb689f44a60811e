"""The CMPP header (Total_Length, Command_Id, Sequence_Id) and cutting a TCP stream into PDUs.

`Framer.feed(data)` returns every complete PDU as a `Frame` and keeps a partial one buffered
(`buffered` says how many octets wait, so a caller can time out a PDU that never completes). A
Total_Length below the header's 12 octets or above `max_len` means the stream is corrupt: a
`FramingError` as soon as the four length octets are visible, carrying the PDUs framed before it;
the framer then stays broken. The cutting is SMPP's (`smsbot.pdu.Framer`, given CMPP's header):
work is linear in the octets fed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from smsbot import pdu

from .constants import HEADER_LEN
from .errors import FramingError

_HEADER = struct.Struct(">III")
# what `pdu.Framer` reads: Total_Length, Command_Id, an empty field where SMPP has command_status, Sequence_Id
_FRAMED_HEADER = struct.Struct(">II0sI")  # 12 octets, HEADER_LEN
MAX_PDU_LEN = 4096  # a 3.0 SUBMIT to 100 destinations is about 3.6 KiB; anything larger is corrupt


class Frame(NamedTuple):
    command_id: int
    sequence: int
    body: bytes


def encode_header(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    """A whole PDU: the header for `body`, then `body`."""
    if not 0 <= sequence <= 0xFFFFFFFF:
        raise ValueError(f"Sequence_Id {sequence} does not fit 4 octets")
    return _HEADER.pack(HEADER_LEN + len(body), command_id, sequence) + body


class Framer:
    __slots__ = ("_framer",)

    def __init__(self, max_len: int = MAX_PDU_LEN) -> None:
        self._framer = pdu.Framer(max_len, header=_FRAMED_HEADER, length_name="Total_Length")

    @property
    def buffered(self) -> int:
        """Octets of an incomplete PDU waiting for more."""
        return self._framer.buffered

    def feed(self, data: bytes) -> list[Frame]:
        try:
            return [Frame(command_id, sequence, body) for command_id, _, sequence, body in self._framer.feed(data)]
        except pdu.FramingError as e:
            raise FramingError(str(e), [Frame(c, s, b) for c, _, s, b in e.pdus]) from None
