"""Text ⇄ Msg_Content: Msg_Fmt 0 (ASCII), 8 (UCS-2) and 15 (GBK), long messages with a UDH.

Sending (`split_text`): ASCII text goes as Msg_Fmt 0, anything else as UCS-2 (8), or as GBK (15)
when asked. One part when it fits (159 octets for ASCII, 140 for the others); otherwise parts of
at most 153 / 134 octets of text behind a `05 00 03 ref total seq` UDH with TP_udhi 1 — the UDH
is `smsbot.codec.with_udh`'s, as for SMPP. A part never ends inside a character (a UTF-16
surrogate pair or a GBK double-byte character stays whole). More than 255 parts: `ValueError`.

Reading (`decode_text`, never raises): 8 → UTF-16-BE (an odd octet or a lone surrogate becomes
U+FFFD); 15 → Python's GBK codec, undecodable octets replaced; 0 and any Msg_Fmt we do not know
→ GBK when the octets are valid GBK (ASCII is), else Latin-1, so gateways that put Chinese under
Msg_Fmt 0 are still read; 3 (write-card) and 4 (binary) are not text → lowercase hex, which never
matches a keyword. `split_content` strips a UDH (TP_udhi 1) with `smsbot.codec.split_udh` and
returns the concatenation segment; `join_parts` joins raw payloads first and decodes once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from smsbot import codec
from smsbot.messages import Segment

from .constants import MsgFmt

SINGLE = {MsgFmt.ASCII: 159, MsgFmt.UCS2: 140, MsgFmt.GBK: 140}  # octets in one message
PART = {MsgFmt.ASCII: 153, MsgFmt.UCS2: 134, MsgFmt.GBK: 134}  # octets of text after a 6-octet UDH
MAX_PARTS = 255
_ENCODINGS = {MsgFmt.ASCII: "ascii", MsgFmt.UCS2: "utf-16-be", MsgFmt.GBK: "gbk"}


@dataclass(frozen=True, slots=True)
class Parts:
    """What a text goes as: its Msg_Fmt, TP_udhi, and the Msg_Content of each part (Pk_total = len)."""

    msg_fmt: int
    tp_udhi: int
    contents: list[bytes]


def choose_fmt(text: str) -> int:
    return MsgFmt.ASCII if text.isascii() else MsgFmt.UCS2


def encode_text(text: str, msg_fmt: int) -> bytes:
    """`text` in Msg_Fmt 0, 8 or 15; `ValueError` naming the character that does not fit."""
    encoding = _ENCODINGS.get(msg_fmt)
    if encoding is None:
        raise ValueError(f"Msg_Fmt {msg_fmt} is not a text format (0, 8 or 15)")
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as e:
        raise ValueError(f"{text[e.start:e.end]!r} cannot be written in Msg_Fmt {msg_fmt}") from None


def _chunks(text: str, msg_fmt: int, size: int) -> list[bytes]:
    """`text` encoded and cut into chunks of at most `size` octets, never inside a character."""
    out: list[bytes] = []
    chunk = bytearray()
    for ch in text:
        data = encode_text(ch, msg_fmt)
        if len(chunk) + len(data) > size:
            out.append(bytes(chunk))
            chunk = bytearray()
        chunk += data
    if chunk or not out:
        out.append(bytes(chunk))
    return out


def split_text(text: str, msg_fmt: int | None = None, ref: int | None = None) -> Parts:
    """The parts `text` goes as (see the module docstring); `ref` (0-255) random when None."""
    fmt = choose_fmt(text) if msg_fmt is None else msg_fmt
    whole = encode_text(text, fmt)
    if len(whole) <= SINGLE[fmt]:
        return Parts(fmt, 0, [whole])
    bodies = _chunks(text, fmt, PART[fmt])
    if len(bodies) > MAX_PARTS:
        raise ValueError(f"text needs {len(bodies)} parts (max {MAX_PARTS})")
    esm, contents = codec.with_udh(bodies, random.randint(0, 255) if ref is None else ref)
    return Parts(fmt, 1 if esm else 0, contents)


def decode_text(msg_fmt: int, data: bytes) -> str:
    data = bytes(data)
    if msg_fmt == MsgFmt.UCS2:
        return data.decode("utf-16-be", "replace")
    if msg_fmt == MsgFmt.GBK:
        return data.decode("gbk", "replace")
    if msg_fmt in (MsgFmt.WRITE_CARD, MsgFmt.BINARY):
        return data.hex()
    try:
        return data.decode("gbk")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def split_content(tp_udhi: int, content: bytes) -> tuple[bytes, Segment | None]:
    """(the text octets, the concatenation segment or None) of one Msg_Content."""
    if not tp_udhi:
        return content, None
    return codec.split_udh(content)


def join_parts(msg_fmt: int, payloads: list[bytes]) -> str:
    """The text of a long message from its parts' text octets, in order: joined, then decoded once."""
    return decode_text(msg_fmt, b"".join(payloads))
