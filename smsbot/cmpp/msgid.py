"""Msg_Id: the gateway's 64-bit message id and its parts.

From the most significant bit: month 4 bits, day 5, hour 5, minute 6, second 6 (when the gateway
made it), the gateway's code 22, and a sequence 16. `MsgId.pack` refuses a part that does not fit
its bits; `MsgId.unpack` reads any 64-bit value (a month of 13 is the peer's business). Status
reports are matched to submits by the whole value; `text` is how smsbot writes it where message
ids are strings (16 lowercase hex digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_FIELDS = (("month", 4), ("day", 5), ("hour", 5), ("minute", 6), ("second", 6), ("gateway", 22), ("sequence", 16))


@dataclass(frozen=True, slots=True)
class MsgId:
    month: int
    day: int
    hour: int
    minute: int
    second: int
    gateway: int
    sequence: int

    @classmethod
    def at(cls, moment: datetime, gateway: int, sequence: int) -> MsgId:
        """The id a gateway with code `gateway` gives its `sequence`th message at `moment`."""
        return cls(moment.month, moment.day, moment.hour, moment.minute, moment.second, gateway, sequence & 0xFFFF)

    def pack(self) -> int:
        value = 0
        for name, bits in _FIELDS:
            part = getattr(self, name)
            if not 0 <= part < 1 << bits:
                raise ValueError(f"Msg_Id {name} {part} does not fit {bits} bits")
            value = (value << bits) | part
        return value

    @classmethod
    def unpack(cls, value: int) -> MsgId:
        if not 0 <= value < 1 << 64:
            raise ValueError(f"Msg_Id {value} does not fit 64 bits")
        parts: dict[str, int] = {}
        for name, bits in reversed(_FIELDS):
            parts[name] = value & ((1 << bits) - 1)
            value >>= bits
        return cls(**parts)


def text(value: int) -> str:
    """A Msg_Id where ids are strings: 16 lowercase hex digits."""
    return f"{value:016x}"
