"""The CMPP header (Total_Length, Command_Id, Sequence_Id) and cutting a TCP stream into PDUs.

`Framer.feed(data)` returns every complete PDU as a `Frame` and keeps a partial one buffered
(`buffered` says how many octets wait, so a caller can time out a PDU that never completes). A
Total_Length below the header's 12 octets or above `max_len` means the stream is corrupt: a
`FramingError` as soon as the four length octets are visible, carrying the PDUs framed before it;
the framer then stays broken. Work is linear in the octets fed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .constants import HEADER_LEN
from .errors import FramingError

_HEADER = struct.Struct(">III")
_LENGTH = struct.Struct(">I")
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
    __slots__ = ("_buf", "_broken", "_max")

    def __init__(self, max_len: int = MAX_PDU_LEN) -> None:
        self._buf = bytearray()
        self._broken: str | None = None
        self._max = max_len

    @property
    def buffered(self) -> int:
        """Octets of an incomplete PDU waiting for more."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._broken is not None:
            raise FramingError(self._broken)
        self._buf += data
        buf = self._buf
        out: list[Frame] = []
        off, n = 0, len(buf)
        while n - off >= 4:
            (length,) = _LENGTH.unpack_from(buf, off)
            if length < HEADER_LEN or length > self._max:
                self._broken = f"bad Total_Length {length} (must be {HEADER_LEN}..{self._max})"
                self._buf = bytearray()
                raise FramingError(self._broken, out)
            if n - off < length:
                break
            _, command_id, sequence = _HEADER.unpack_from(buf, off)
            out.append(Frame(command_id, sequence, bytes(buf[off + HEADER_LEN:off + length])))
            off += length
        if off:
            del buf[:off]
        return out
