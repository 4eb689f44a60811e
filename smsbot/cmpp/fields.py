"""Fixed-length fields and the two layouts: how CMPP 3.0 and 2.0 differ, and reading/writing fields.

`Layout` holds every width that differs between the versions (terminal ids of 32 or 21 octets,
terminal-type octets present or not, LinkID of 20 octets or a Reserve of 8, Result/Status of 4
octets or 1). `layout(version)` picks one: 0x30 and above read as 3.0, anything below as 2.0.

`Writer` is strict (what we send): an octet string is ASCII, at most its width, padded with NUL
to exactly its width; an integer must fit its octets. Anything else is a `ValueError` naming the
field. `Reader` is liberal (what we accept): an octet string ends at its first NUL and loses
surrounding spaces (gateways pad with either), is read as Latin-1 so no octet is refused; only
a body cut short is a `CmppError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import Version
from .errors import CmppError


@dataclass(frozen=True, slots=True)
class Layout:
    version: int  # the Version octet this layout is written with
    terminal_id: int  # Fee/Dest/Src_terminal_Id and the status report's Dest_terminal_Id
    terminal_types: bool  # Fee_terminal_type, Dest_terminal_type, Src_terminal_type present
    tail: int  # LinkID (3.0) or Reserve (2.0) after Msg_Content
    result: int  # octets of CONNECT_RESP Status and SUBMIT_RESP / DELIVER_RESP Result

    @property
    def report_len(self) -> int:
        """A status report: Msg_Id 8, Stat 7, Submit_time 10, Done_time 10, Dest_terminal_Id, SMSC_sequence 4."""
        return 8 + 7 + 10 + 10 + self.terminal_id + 4


V30 = Layout(Version.V30, terminal_id=32, terminal_types=True, tail=20, result=4)
V20 = Layout(Version.V20, terminal_id=21, terminal_types=False, tail=8, result=1)


def layout(version: int) -> Layout:
    """The layout a connection of `version` uses (0x30 and up: 3.0; below: 2.0)."""
    return V30 if version >= Version.V30 else V20


class Writer:
    """Builds a body field by field, strictly."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out = bytearray()

    def octets(self, name: str, value: str, width: int) -> None:
        """`value` as ASCII, NUL-padded to exactly `width` octets."""
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name} {value!r} is not ASCII") from None
        if len(raw) > width:
            raise ValueError(f"{name} {value!r} is longer than its {width} octets")
        self._out += raw
        self._out += bytes(width - len(raw))

    def raw(self, name: str, value: bytes, width: int | None = None) -> None:
        """`value` as it is; with `width`, it must be exactly that long."""
        if width is not None and len(value) != width:
            raise ValueError(f"{name} must be {width} octets, not {len(value)}")
        self._out += value

    def uint(self, name: str, value: int, width: int) -> None:
        if not 0 <= value < 1 << (8 * width):
            raise ValueError(f"{name} {value} does not fit {width} octet(s)")
        self._out += value.to_bytes(width, "big")

    def getvalue(self) -> bytes:
        return bytes(self._out)


class Reader:
    """Reads a body field by field, liberally; `CmppError` when a field runs past the body."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    def _take(self, name: str, width: int) -> bytes:
        end = self._pos + width
        if end > len(self._data):
            raise CmppError(f"{self._what} cut short: {name} needs {width} octet(s) at {self._pos}, "
                            f"the body has {len(self._data)}")
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def octets(self, name: str, width: int) -> str:
        """An octet string: up to its first NUL, surrounding spaces stripped, read as Latin-1."""
        return text_of(self._take(name, width))

    def raw(self, name: str, width: int) -> bytes:
        return self._take(name, width)

    def uint(self, name: str, width: int) -> int:
        return int.from_bytes(self._take(name, width), "big")

    def rest(self) -> bytes:
        chunk = self._data[self._pos:]
        self._pos = len(self._data)
        return chunk


def text_of(raw: bytes) -> str:
    """A fixed-length octet string as text: NUL- or space-padded alike."""
    return raw.split(b"\0", 1)[0].strip(b" ").decode("latin-1")
