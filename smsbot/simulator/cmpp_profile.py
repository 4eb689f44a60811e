"""Profiles of the simulated ISMG (CMPP): how it behaves on the wire, flag by flag.

The CMPP counterpart of `profiles` (SMPP). ``default`` is a tidy gateway; ``field`` behaves like
ISMGs met in the field:

=====================  =========  ==============================================================
flag                   field      what
=====================  =========  ==============================================================
padding                ``space``  fixed-width text fields of DELIVERs (Dest_Id, Service_Id,
                                  Src_terminal_Id, the report's Stat / times / Dest_terminal_Id,
                                  LinkID) padded with spaces instead of NULs
mo_msg_fmt             15         Msg_Fmt of every MO: 15 (GBK, even for ASCII text), 8 (UCS-2)
                                  or 0 (ASCII only); null: 0 for ASCII, else 8
msg_id_cycle           16         the Msg_Ids of SUBMIT_RESPs (MT parts) repeat after N: their
                                  time is the gateway's start and their sequence counts 1..N
                                  (reused ids); 0: every id unique
international_source   true       MOs come from ``86…`` (the country code in front)
receipt_outcomes       {}         ``{MSISDN: "STAT"}``: status reports of MTs to MSISDN say STAT
                                  (7 characters at most, e.g. ``UNDELIV``; default DELIVRD); an
                                  SMPP-style ``"UNDELIV:034"`` (the page's) keeps the Stat only
=====================  =========  ==============================================================

Partial PDUs and silence are actions, not flags (`SimIsmg.send_partial`, ``POST /partial``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from smsbot.cmpp.constants import CommandId, Version

from .profiles import ProfileError

PADDINGS = ("nul", "space")
MSG_FMTS = (0, 8, 15)
HEADER = 12


@dataclass(frozen=True)
class CmppBehaviour:
    padding: str = "nul"
    mo_msg_fmt: int | None = None
    msg_id_cycle: int = 0
    international_source: bool = False
    receipt_outcomes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "field": {"padding": "space", "mo_msg_fmt": 15, "msg_id_cycle": 16, "international_source": True},
}


def make_behaviour(profile: str, **flags: Any) -> CmppBehaviour:
    """The behaviour of `profile` with `flags` on top; `ProfileError` names what is wrong."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    known = CmppBehaviour.__dataclass_fields__
    unknown = set(flags) - set(known)
    if unknown:
        raise ProfileError(f"unknown CMPP profile flag(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    b = CmppBehaviour(**{**PROFILES[profile], **flags})
    if b.padding not in PADDINGS:
        raise ProfileError(f'"padding" must be one of {", ".join(PADDINGS)}')
    if b.mo_msg_fmt is not None and (isinstance(b.mo_msg_fmt, bool) or b.mo_msg_fmt not in MSG_FMTS):
        raise ProfileError('"mo_msg_fmt" must be 0, 8, 15 or null')
    if isinstance(b.msg_id_cycle, bool) or not isinstance(b.msg_id_cycle, int) or not 0 <= b.msg_id_cycle <= 0xFFFF:
        raise ProfileError('"msg_id_cycle" must be an integer 0..65535')
    if not isinstance(b.international_source, bool):
        raise ProfileError('"international_source" must be true or false')
    if not isinstance(b.receipt_outcomes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(stat_of(v)) <= 7 and v.isascii()
            for k, v in b.receipt_outcomes.items()):
        raise ProfileError('"receipt_outcomes" must be an object {"MSISDN": "STAT"} (STAT: 1-7 ASCII characters)')
    return b


def stat_of(outcome: str) -> str:
    """The Stat of a ``receipt_outcomes`` value (``"UNDELIV:034"`` → ``"UNDELIV"``)."""
    return outcome.split(":", 1)[0]


def _text_fields(body: bytes, version: int) -> list[tuple[int, int]]:
    """(offset, width) in a DELIVER's `body` of its fixed-width text fields."""
    tid = 32 if version >= Version.V30 else 21
    src = 42  # after Msg_Id 8, Dest_Id 21, Service_Id 10, TP_pid, TP_udhi, Msg_Fmt
    content = src + tid + (1 if version >= Version.V30 else 0) + 2  # terminal type, Registered_Delivery, Msg_Length
    registered_delivery, msg_length = body[content - 2], body[content - 1]
    fields = [(8, 21), (29, 10), (src, tid)]  # Dest_Id, Service_Id, Src_terminal_Id
    if registered_delivery == 1:  # the report: Msg_Id 8, Stat 7, Submit_time 10, Done_time 10, Dest_terminal_Id
        fields += [(content + 8, 7), (content + 15, 10), (content + 25, 10), (content + 35, tid)]
    if version >= Version.V30:
        fields.append((content + msg_length, 20))  # LinkID
    return fields


def space_padded(pdu: bytes, version: int) -> bytes:
    """An encoded DELIVER (header included) with its text fields' NUL padding turned to spaces."""
    out = bytearray(pdu)
    body = pdu[HEADER:]
    for offset, width in _text_fields(body, version):
        start = HEADER + offset
        value = bytes(out[start:start + width])
        kept = value.rstrip(b"\x00")
        out[start:start + width] = kept + b" " * (len(value) - len(kept))
    return bytes(out)


def partial_pdu(sequence: int, announced: int, octets: int) -> bytes:
    """A DELIVER header announcing `announced` octets (header included) and only `octets` of body."""
    if not HEADER < announced <= 0xFFFFFFFF:
        raise ValueError(f"announced length must be above {HEADER}")
    if not 0 <= octets < announced - HEADER:
        raise ValueError("octets must be fewer than the announced body")
    return (announced.to_bytes(4, "big") + int(CommandId.DELIVER).to_bytes(4, "big") + sequence.to_bytes(4, "big")
            + b"\x00" * octets)
